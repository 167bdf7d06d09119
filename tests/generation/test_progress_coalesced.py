"""The progress of every job a worker process runs is written together (issue #16): per
report one UPDATE and one query for all of them, however many, each row still guarded by
its own claim; cancel requests and takeovers still stop their jobs, and a job that ended
publishes no more progress."""

import threading
import time
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image as PILImage

from generation import leases
from generation.execution import JobProgress, job_execute
from generation.leases import Standing, claim, worked_on_together
from generation.models import DiffusionModel, GenerationJob, JobStatus
from generation.progress import ProgressWriter
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import make_job, published_events

pytestmark = pytest.mark.django_db

STEPS = 10


@pytest.fixture
def studio():
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source="/models/tiny-sd15")
    return project, user, model


@pytest.fixture
def make_jobs(studio):
    def make(count, **fields):
        return [make_job(*studio, **{"steps": STEPS, "seed": n, **fields}) for n in range(count)]

    return make


@pytest.fixture
def writer(settings):
    """A writer of its own; between their first and last steps, jobs' steps wait for one
    of those (due at once) to be written with them."""
    settings.STUDIO_PROGRESS_INTERVAL_S = 3600
    fresh = ProgressWriter()
    with mock.patch("generation.execution.progress_writer", fresh):
        yield fresh


@pytest.fixture
def published():
    with published_events() as events:
        yield events


def progress_of(events, job):
    return [e["step"] for e in events if e["type"] == "job.progress" and e["job_id"] == job.pk]


def started(jobs):
    """Each job claimed by this worker and at its first step, which is written at once."""
    progresses = []
    for job in jobs:
        progress = JobProgress(job, claim(GenerationJob, job.pk), job.project.events_group())
        progress.on_step(1)
        progresses.append(progress)
    return progresses


def rows(jobs):
    return list(
        GenerationJob.objects.filter(pk__in=[job.pk for job in jobs])
        .order_by("pk")
        .values_list("progress_step", "attempts")
    )


@pytest.mark.parametrize("count", [1, 8])
def test_one_update_and_one_query_per_report_whatever_the_number_of_jobs(
    count, make_jobs, writer, published
):
    jobs = make_jobs(count)
    progresses = started(jobs)
    for n, progress in enumerate(progresses):
        progress.on_step(2 + n % 3)  # waits for the next write
    assert rows(jobs) == [(1, 1)] * count

    with CaptureQueriesContext(connection) as queries:
        progresses[0].on_step(STEPS)  # its last step: written at once, with every other

    assert [query["sql"].split()[0] for query in queries] == ["UPDATE", "SELECT"]
    steps = [STEPS] + [2 + n % 3 for n in range(1, count)]
    # Each row its own step; the attempt counted once, at its first step.
    assert rows(jobs) == [(step, 1) for step in steps]
    for job, step in zip(jobs, steps, strict=True):
        assert progress_of(published, job) == [1, step]
    assert not any(progress.cancel.is_set() for progress in progresses)


def test_a_write_publishes_its_jobs_events_together_and_keeps_their_previews_at_once(
    make_jobs, writer
):
    """One channel-layer send per project and one cache write for the previews, not one
    of each per job (studio.realtime.events.publish_all, GenerationJob.previews_keep)."""
    jobs = make_jobs(4)
    with mock.patch("generation.progress.publish_all"):
        progresses = started(jobs)
    for n, progress in enumerate(progresses):
        progress.on_preview(2, PILImage.new("RGB", (8, 8), (40 * n, 0, 0)))
        progress.on_step(2)

    with mock.patch("generation.progress.publish_all") as publish_all, mock.patch.object(
        GenerationJob, "previews_keep", wraps=GenerationJob.previews_keep
    ) as previews_keep:
        progresses[0].on_step(STEPS)

    [(messages,)] = [call.args for call in publish_all.call_args_list]
    assert [(group, event["job_id"], event["step"]) for group, event in messages] == [
        (job.project.events_group(), job.pk, STEPS if n == 0 else 2) for n, job in enumerate(jobs)
    ]
    [(previews,)] = [call.args for call in previews_keep.call_args_list]
    assert previews == {event["job_id"]: event["preview"] for _, event in messages}
    assert len(set(previews.values())) == 4
    for job in jobs:
        assert job.latest_preview() == previews[job.pk]


def test_a_cancel_request_and_a_takeover_stop_their_jobs_only(make_jobs, writer, published):
    jobs = make_jobs(3)
    canceled, taken_over, running = started(jobs)
    GenerationJob.objects.filter(pk=jobs[0].pk).update(cancel_requested_at=timezone.now())
    # The sweeper took the second back after its lease lapsed, and another worker claimed it.
    GenerationJob.objects.filter(pk=jobs[1].pk).update(claims=F("claims") + 1)
    canceled.on_step(4)
    taken_over.on_step(4)

    running.on_step(STEPS)

    assert [p.cancel.is_set() for p in (canceled, taken_over, running)] == [True, True, False]
    # Canceled, it still reports the step it made; taken over, it writes and says nothing.
    assert progress_of(published, jobs[0]) == [1, 4]
    assert progress_of(published, jobs[1]) == [1]
    assert [step for step, _ in rows(jobs)] == [4, 1, STEPS]


def test_a_job_that_ended_publishes_no_progress_after(make_jobs, writer, published):
    jobs = make_jobs(2)
    ending, going_on = started(jobs)
    ending.on_step(5)

    ending.end()
    going_on.on_step(STEPS)

    assert progress_of(published, jobs[0]) == [1]
    assert [step for step, _ in rows(jobs)] == [1, STEPS]


def test_a_preview_goes_with_the_newest_progress_written(make_jobs, writer, published):
    [progress] = started(make_jobs(1))
    progress.on_preview(2, PILImage.new("RGB", (8, 8), (10, 20, 30)))
    progress.on_step(2)
    progress.on_step(3)  # replaces step 2, not yet written: the preview waits with it

    progress.on_step(STEPS)

    [first, last] = [e for e in published if e["type"] == "job.progress"]
    assert "preview" not in first
    assert last["step"] == STEPS and last["preview"].startswith("data:image/jpeg;base64,")


def test_ending_waits_for_a_write_under_way_with_its_step(settings):
    """The job's end is announced after its progress: `end` returns once a write that took
    its step (on another job's thread) has published it."""
    settings.STUDIO_PROGRESS_INTERVAL_S = 3600
    writer = ProgressWriter()
    ending, other = object(), object()
    publishing, release = threading.Event(), threading.Event()
    said = []

    def published_slowly(step, standing):
        publishing.set()
        release.wait(5)
        said.append(("progress", step))

    def held(steps):
        return dict.fromkeys(steps, Standing.HELD)

    with mock.patch("generation.progress.worked_on_together", side_effect=held):
        nothing_to_publish = mock.Mock(return_value=None)
        writer.report(other, 0, nothing_to_publish, due=True)  # its first step: written at once
        writer.report(ending, 3, published_slowly)  # waits for the next write
        other_job = threading.Thread(target=writer.report, args=(other, STEPS, nothing_to_publish),
                                     kwargs={"due": True})
        other_job.start()
        assert publishing.wait(5)
        ended = threading.Thread(target=lambda: (writer.end(ending), said.append("ended")))
        ended.start()
        ended.join(0.2)
        assert ended.is_alive()  # the write under way publishes first
        release.set()
        for thread in (ended, other_job):
            thread.join(5)
    assert said == [("progress", 3), "ended"]


def test_a_database_error_while_writing_keeps_the_steps_for_the_next_write(writer):
    hold, said = object(), []
    with mock.patch("generation.progress.worked_on_together",
                    side_effect=[OperationalError("the server closed the connection"),
                                 {hold: Standing.HELD}]) as write:
        writer.report(hold, 1, lambda *told: said.append(told), due=True)
        assert said == []  # nothing written; no error for the job either
        writer.report(hold, 2, lambda *told: said.append(told), due=True)
    assert write.call_args_list[-1].args == ({hold: 2},)
    assert said == [(2, Standing.HELD)]


def test_worked_on_together_writes_each_row_only_while_its_claim_is_the_latest(make_jobs):
    jobs = make_jobs(3)
    holds = [claim(GenerationJob, job.pk) for job in jobs]
    worked_on_together({holds[0]: 1})
    GenerationJob.objects.filter(pk=jobs[2].pk).update(claims=F("claims") + 1)
    before = GenerationJob.objects.get(pk=jobs[2].pk)

    with CaptureQueriesContext(connection) as queries:
        standings = worked_on_together({holds[0]: 5, holds[1]: 2, holds[2]: 7})

    assert len(queries) == 2
    assert [standings[hold] for hold in holds] == [Standing.HELD, Standing.HELD, Standing.LOST]
    # The first counted its attempt before, the second at this, its first step.
    assert rows(jobs) == [(5, 1), (2, 1), (0, 0)]
    lost = GenerationJob.objects.get(pk=jobs[2].pk)
    assert lost.lease_expires_at == before.lease_expires_at


def test_a_job_ended_by_its_owner_or_another_worker_is_no_longer_held(make_jobs):
    jobs = make_jobs(2)
    holds = [claim(GenerationJob, job.pk) for job in jobs]
    GenerationJob.objects.filter(pk=jobs[0].pk).update(cancel_requested_at=timezone.now())
    GenerationJob.objects.filter(pk=jobs[1].pk).update(status=JobStatus.CANCELED)

    standings = worked_on_together(dict.fromkeys(holds, 3))

    assert [standings[hold] for hold in holds] == [Standing.CANCEL_REQUESTED, Standing.LOST]


# On the tiny model, through the engine, as a worker runs them.


@pytest.fixture
def tiny_jobs(make_jobs, tiny_model_dir):
    DiffusionModel.objects.update(source=str(tiny_model_dir))

    def make(count):
        return make_jobs(count, steps=5, width=64, height=48)

    return make


def test_a_database_error_at_a_step_fails_no_job(tiny_jobs):
    """The write fails (the database restarts, say): the job goes on, and its steps are
    written with the next report."""
    [job] = tiny_jobs(1)
    real_deadline = leases.lease_deadline
    calls = []

    def deadline():
        calls.append(1)
        if len(calls) == 2:  # the claim's, then the first step's
            raise OperationalError("the server closed the connection unexpectedly")
        return real_deadline()

    with mock.patch("generation.leases.lease_deadline", side_effect=deadline), \
            published_events() as events:
        job_execute(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.progress_step, job.attempts) == (JobStatus.FINISHED, 5, 1)
    assert progress_of(events, job) == [2, 3, 4, 5]
    assert events[-1]["type"] == "job.finished"


@pytest.mark.django_db(transaction=True)
def test_jobs_running_together_share_each_write(tiny_jobs):
    """Jobs on worker threads of one process, batched by the engine: every write of their
    progress is one UPDATE and one query, however many jobs it carries, each job's steps
    land in its row, and nothing of a job is published after its end."""
    jobs = tiny_jobs(4)
    writes = []
    real_write = worked_on_together

    def write(steps):
        with CaptureQueriesContext(connection) as queries:
            standings = real_write(steps)
        writes.append((len(steps), len(queries)))
        return standings

    def work():
        job_execute(job_id=jobs[0].pk)
        connection.close()

    # The images' committed thumbnail and scan tasks stay here: with a broker configured, a
    # worker elsewhere would write them into this database while the test's flush runs.
    with mock.patch("generation.progress.worked_on_together", side_effect=write), \
            published_events() as events, \
            mock.patch("gallery.dispatch.send"), \
            mock.patch("studio.moderation.dispatch.send"):
        threads = [threading.Thread(target=work) for _ in jobs]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        for thread in threads:
            thread.join(max(0, deadline - time.monotonic()))

    assert not any(thread.is_alive() for thread in threads)
    assert all(queries == 2 for _, queries in writes), writes
    assert rows(jobs) == [(5, 1)] * len(jobs)
    for job in jobs:
        types = [e["type"] for e in events if e["job_id"] == job.pk]
        assert types[0] == "job.started" and types[-1] == "job.finished", types
        assert progress_of(events, job)[-1] == 5
