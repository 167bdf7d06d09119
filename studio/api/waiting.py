"""Waiting for jobs inside a request, for the APIs that answer with the finished images
(A1111's and OpenAI's). The database is the source of truth (docs/ARCHITECTURE.md), so the
wait reads the jobs' rows rather than listening for events that a lost message could drop."""

import time

from django.conf import settings

from generation import services
from generation.models import GenerationJob, JobStatus
from studio.api.problems import Problem

ENDED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED)
# Short enough to add little to a job of seconds, long enough not to load the database.
POLL_SECONDS = 0.1


def jobs_wait(*, jobs, user):
    """`jobs` reloaded once every one has ended. Past STUDIO_API_WAIT_SECONDS they are
    canceled (no one will collect their images) and the request gets a 504."""
    ids = [job.pk for job in jobs]
    deadline = time.monotonic() + settings.STUDIO_API_WAIT_SECONDS
    while GenerationJob.objects.filter(pk__in=ids).exclude(status__in=ENDED).exists():
        if time.monotonic() >= deadline:
            for job in GenerationJob.objects.filter(pk__in=ids).exclude(status__in=ENDED):
                services.job_cancel(job=job, user=user)
            raise Problem(
                504,
                f"The job did not finish within {settings.STUDIO_API_WAIT_SECONDS:g} seconds "
                "(STUDIO_API_WAIT_SECONDS) and was canceled; try fewer or smaller images.",
            )
        time.sleep(POLL_SECONDS)
    return list(
        GenerationJob.objects.filter(pk__in=ids)
        .select_related("model", "project")
        .prefetch_related("images")
        .order_by("pk")
    )
