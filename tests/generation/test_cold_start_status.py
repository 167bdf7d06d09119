"""A cold worker says what it is doing before the first step: starting, loading model X."""

import sys
from collections import OrderedDict
from unittest import mock

import pytest

from generation.execution import job_execute
from generation.models import DiffusionModel, GenerationJob
from generation.tasks import run_generation_job
from gpu_workers import pipelines
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import published_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(tiny_model_dir):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    return GenerationJob.objects.create(
        project=project, created_by=user, model=model, prompt="a fox", steps=3,
        guidance_scale=7, width=64, height=64, seed=1,
    )


@pytest.fixture
def cold_models(monkeypatch):
    monkeypatch.setattr(pipelines, "_cache", OrderedDict())


def run(job):
    with published_events() as events:
        job_execute(job_id=job.pk)
    return events


def test_a_model_not_in_memory_is_announced_by_name_before_the_first_step(job, cold_models):
    events = run(job)
    types = [event["type"] for event in events]
    loading = [event for event in events if event["type"] == "job.preparing"]
    assert [(e["stage"], e["loading"], e["loaded"], e["of"]) for e in loading] == [
        ("loading", "tiny-sd15", 0, 1),
        ("loading", "", 1, 1),
    ]
    assert types.index("job.started") < types.index("job.preparing")
    assert max(i for i, t in enumerate(types) if t == "job.preparing") < types.index(
        "job.progress"
    )
    assert all(event["job_id"] == job.pk for event in loading)


def test_a_model_in_memory_is_not_announced(job, cold_models):
    pipelines.load_pipeline(job.model.source, pipelines.WorkerConfig.from_env())
    events = run(job)
    assert "job.preparing" not in [event["type"] for event in events]


def test_a_cold_worker_says_it_is_starting_before_it_imports_torch(job):
    # A worker that has not imported the execution module yet (torch, diffusers) is cold.
    with mock.patch.dict(sys.modules), mock.patch("generation.services.publish") as publish:
        del sys.modules["generation.execution"]
        run_generation_job(job.pk)
    events = [call.args for call in publish.call_args_list]
    [(group, event)] = [(g, e) for g, e in events if e["type"] == "job.preparing"]
    assert group == job.project.events_group()
    assert (event["stage"], event["job_id"]) == ("worker", job.pk)
    assert events[0][1] == event  # before anything the run itself publishes


def test_a_warm_worker_does_not_say_it_is_starting(job):
    with (
        mock.patch("generation.services.publish") as publish,
        mock.patch("generation.execution.job_execute"),
    ):
        run_generation_job(job.pk)
    publish.assert_not_called()


def test_a_job_no_longer_queued_is_not_announced(job):
    from generation.services import job_announce_worker_starting

    GenerationJob.objects.filter(pk=job.pk).update(status="canceled")
    with mock.patch("generation.services.publish") as publish:
        job_announce_worker_starting(job_id=job.pk)
    publish.assert_not_called()
