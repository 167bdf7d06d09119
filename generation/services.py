import logging
import secrets

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from generation.dispatch import enqueue_generation
from generation.models import GenerationJob, JobStatus
from studio.permissions import can
from studio.realtime.events import publish

logger = logging.getLogger(__name__)


def random_seed():
    return secrets.randbelow(2**32)


def job_create(*, user, project, params):
    """Create a queued job from validated form data and dispatch it once committed."""
    if not can(user, "generate", project):
        raise PermissionDenied("Your role in this project does not allow generating.")
    seed = params.get("seed")
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project=project,
            created_by=user,
            model=params["model"],
            prompt=params["prompt"],
            negative_prompt=params.get("negative_prompt", ""),
            steps=params["steps"],
            guidance_scale=params["guidance_scale"],
            width=params["width"],
            height=params["height"],
            seed=random_seed() if seed is None else seed,
        )
        transaction.on_commit(lambda: job_dispatch(job))
    return job


def job_dispatch(job):
    """Hand a committed job to the workers and tell the project's members it is waiting."""
    try:
        enqueue_generation(job.pk)
    except Exception:
        logger.exception("Could not enqueue job %s", job.pk)
        job.status = JobStatus.FAILED
        job.error = "The job queue could not be reached, so this job was not started. Retry it."
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        publish(job.project.events_group(), job.event_payload(type="job.failed", error=job.error))
        return
    publish(
        job.project.events_group(),
        job.event_payload(type="job.queued", position=job.queue_position()),
    )
