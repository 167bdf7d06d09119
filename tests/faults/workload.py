"""The work the fault-injection scenarios and the benchmark submit, and polls of its state
that survive the database going away (a poll during a PostgreSQL restart just says "not
yet")."""

import time

from django.db import OperationalError, connection
from django.db.utils import InterfaceError

from generation.models import DiffusionModel, GenerationJob, JobStatus
from generation.services import job_create
from studio.accounts.models import Membership, Project, Role, Team, User

FINAL = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED)


def users_with_projects(count):
    """`count` users, each the owner of a team with one project: [(user, project)]."""
    pairs = []
    for n in range(1, count + 1):
        user = User.objects.create_user(f"user{n}", f"user{n}@example.org", "pw")
        team = Team.objects.create(name=f"Team {n}")
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
        pairs.append((user, Project.objects.create(team=team, name=f"Project {n}")))
    return pairs


def jobs_submit(*, pairs, model_dir, jobs, steps, size=64):
    """`jobs` txt2img jobs taking turns between the users; every third asks for two images.
    Returns their ids in submission order."""
    model, _ = DiffusionModel.objects.get_or_create(
        name="tiny-sd15", defaults={"source": str(model_dir)}
    )
    ids = []
    for n in range(jobs):
        user, project = pairs[n % len(pairs)]
        job = job_create(user=user, project=project, params={
            "model": model, "prompt": f"a lighthouse, take {n}", "negative_prompt": "",
            "steps": steps, "guidance_scale": 7.0, "width": size, "height": size,
            "seed": 1000 + n, "batch_size": 2 if n % 3 == 2 else 1,
        })
        ids.append(job.pk)
    return ids


def polled(query):
    """`query()`, or None while the database is unreachable (its connection is dropped so
    the next poll opens a new one)."""
    try:
        return query()
    except (OperationalError, InterfaceError):
        connection.close()
        return None


def job_states(job_ids):
    """{job id: status}, or None while the database is down."""
    return polled(lambda: dict(
        GenerationJob.objects.filter(pk__in=job_ids).values_list("pk", "status")
    ))


def all_final(job_ids):
    states = job_states(job_ids)
    return states is not None and all(status in FINAL for status in states.values())


def running_job(job_ids, *, pids, min_step=1):
    """A job of these past `min_step` on one of the worker processes `pids`, or None. (Jobs
    of a worker killed before stay running until their lease lapses.)"""
    running = polled(lambda: list(GenerationJob.objects.filter(
        pk__in=job_ids, status=JobStatus.RUNNING, progress_step__gte=min_step
    ).order_by("?")))
    return next((job for job in running or [] if worker_pid(job) in pids), None)


def count_in(job_ids, *statuses):
    return polled(lambda: GenerationJob.objects.filter(
        pk__in=job_ids, status__in=statuses
    ).count()) or 0


def worker_pid(job):
    """The process id in a job's `worker` ("host:pid")."""
    return int(job.worker.rsplit(":", 1)[1])


def stuck_jobs_report(job_ids):
    """One line per job that is not final yet: what a failed wait should show."""
    rows = polled(lambda: list(
        GenerationJob.objects.filter(pk__in=job_ids).exclude(status__in=FINAL).values_list(
            "pk", "status", "attempts", "worker", "progress_step", "lease_expires_at"
        ).order_by("pk")
    ))
    if rows is None:
        return "the database is unreachable"
    return "\n".join(
        f"job {pk}: {status}, attempts {attempts}, worker {worker or '-'}, step {step}, "
        f"lease until {lease}"
        for pk, status, attempts, worker, step, lease in rows
    )


def wait_for_final(job_ids, timeout):
    """Wait until every job is final; AssertionError listing those that are not."""
    deadline = time.monotonic() + timeout
    while not all_final(job_ids):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"jobs not final after {timeout:.0f} s:\n{stuck_jobs_report(job_ids)}"
            )
        time.sleep(0.5)
