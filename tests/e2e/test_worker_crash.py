"""A worker killed mid-job (SIGKILL) while a second worker runs: once the job's lease lapses
the sweeper queues it again, the second worker takes it over, and it finishes exactly once."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings

from gallery.models import Image
from generation.models import DiffusionModel, GenerationJob, JobStatus
from generation.services import job_create
from generation.sweeper import sweep
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.conftest import ROOT, database_url

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis and Celery (REDIS_URL)"),
]

# Its own queue: the session's end-to-end worker, if one was started, must not take the job.
QUEUE = "gpu-crash-test"
# Short enough for a test. The visibility timeout is even shorter than the job, so the
# broker hands its message out again while the first worker still runs it: that extra
# message must not run the job twice.
VISIBILITY_TIMEOUT_S = 1
LEASE_S = 2


def start_worker(name, logs):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "STUDIO_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        "STUDIO_JOB_LEASE_S": str(LEASE_S),
        "PYTHONUNBUFFERED": "1",
    }
    log = (logs / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "studio", "worker", "-Q", QUEUE,
         "--concurrency", "1", "--loglevel", "INFO",
         "--hostname", f"{name}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_worker_job_finishes_once_on_the_other_worker(tiny_model_dir, tmp_path, settings):
    settings.STUDIO_JOB_LEASE_S = LEASE_S
    settings.STUDIO_GPU_QUEUE = QUEUE
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "studio", "purge", "-f", "-Q", QUEUE],
        cwd=ROOT, check=True, capture_output=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))

    workers = {name: start_worker(name, tmp_path) for name in ("first", "second")}
    try:
        # Long enough on the tiny model to be killed in the middle.
        job = job_create(user=user, project=project, params={
            "model": model, "prompt": "a slow lighthouse", "negative_prompt": "", "steps": 40,
            "guidance_scale": 7.0, "width": 256, "height": 256, "seed": 5,
        })
        running = wait_for(
            lambda: GenerationJob.objects.filter(pk=job.pk, progress_step__gte=2).first(),
            180, "the job to be running",
        )
        victim_pid = int(running.worker.rsplit(":", 1)[1])
        victim = next(p for p in workers.values() if p.pid == victim_pid)
        os.kill(victim_pid, signal.SIGKILL)
        victim.wait(timeout=10)

        def swept_and_ended():
            sweep()  # what Celery beat runs every few seconds
            return GenerationJob.objects.filter(pk=job.pk).exclude(
                status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()

        finished = wait_for(swept_and_ended, 240, "the job to end on the second worker")
        assert finished.status == JobStatus.FINISHED, finished.error
        assert finished.attempts == 2
        assert int(finished.worker.rsplit(":", 1)[1]) != victim_pid
        assert Image.objects.filter(job=job).count() == 1
        # Nothing else delivers it a third time.
        time.sleep(VISIBILITY_TIMEOUT_S + 2)
        sweep()
        assert GenerationJob.objects.get(pk=job.pk).attempts == 2
        assert Image.objects.filter(job=job).count() == 1
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.terminate()
        for process in workers.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
