"""Waiting for jobs inside a request, for the APIs that answer with the finished images
(A1111's and OpenAI's). The database is the source of truth (docs/ARCHITECTURE.md), so the
wait reads the jobs' rows rather than listening for events that a lost message could drop."""

import re
import time

from django.conf import settings
from django.db import connection
from pydantic import ValidationError

from generation import services
from generation.models import GenerationJob, JobStatus
from studio.api.jobs import JobCreateIn, create
from studio.api.problems import Problem, throttle
from studio.throttling import generate_rate_limited

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
        # A waiting request would hold one of the process's pooled connections for
        # minutes: give it back between looks (the next query takes one again).
        if not connection.in_atomic_block:
            connection.close()
        time.sleep(POLL_SECONDS)
    return list(
        GenerationJob.objects.filter(pk__in=ids)
        .select_related("model", "project")
        .prefetch_related("images")
        .order_by("pk")
    )


def recipe_run(request, project, values, *, field_name):
    """Queue the jobs of a recipe (JobCreateIn's fields; None: left out) through the
    studio's form and services, as the native API does, and wait for them. Refusals name
    the fields as `field_name(recipe field)` says the caller's API calls them."""
    throttle(request, generate_rate_limited)
    try:
        payload = JobCreateIn.model_validate(
            {name: value for name, value in values.items() if value is not None}
        )
    except ValidationError as error:
        errors = [
            {"field": field_name(str(item["loc"][0])) if item["loc"] else None,
             "message": item["msg"]}
            for item in error.errors()
        ]
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        raise Problem(422, detail, errors=errors) from None
    try:
        jobs, _ = create(request, project, payload)
    except Problem as problem:
        for error in problem.errors:
            renamed = field_name(error["field"])
            if error["field"] and renamed != error["field"]:
                # The detail names the field as "name: message" too.
                problem.detail = re.sub(
                    rf"(?<![\w.]){re.escape(error['field'])}:", f"{renamed}:", problem.detail
                )
            error["field"] = renamed
        raise
    return jobs_wait(jobs=jobs, user=request.user)
