"""The embedded mode's worker: the same task code, run in one thread of the web process."""

import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

# As many threads as the engine batches, like a Celery GPU worker's thread pool.
_executor = ThreadPoolExecutor(
    max_workers=settings.STUDIO_MAX_BATCH, thread_name_prefix="embedded-worker"
)


def _run(job_id):
    from generation.tasks import run_generation_job

    close_old_connections()
    try:
        run_generation_job.run(job_id)
    except Exception:
        logger.exception("Generation job %s crashed in the embedded worker", job_id)
    finally:
        close_old_connections()


def submit_generation(job_id):
    return _executor.submit(_run, job_id)


# CPU tasks (thumbnails): one thread of their own, so they never wait behind generation.
_cpu_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-cpu")


def _run_task(task, args):
    close_old_connections()
    try:
        task.run(*args)
    except Exception:
        logger.exception("Task %s%r crashed in the embedded worker", task.name, args)
    finally:
        close_old_connections()


def submit_cpu_task(task, *args):
    """Run a Celery task's code in the CPU thread, as a `default` queue worker would."""
    return _cpu_executor.submit(_run_task, task, args)


# Training runs: one at a time in a thread of their own, beside generation, as a worker
# consuming the `train` queue.
_train_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-train")


def submit_training(run_id):
    from generation.tasks import run_training

    return _train_executor.submit(_run_task, run_training, (run_id,))


def resume_unfinished_jobs():
    """Requeue what a previous run of the server left queued or running."""
    from generation.models import GenerationJob, JobStatus, TrainingRun

    GenerationJob.objects.filter(status=JobStatus.RUNNING).update(status=JobStatus.QUEUED)
    for job_id in GenerationJob.objects.queued().order_by("created_at", "id").values_list(
        "pk", flat=True
    ):
        submit_generation(job_id)
    # A run the server stopped in the middle starts again from its first step.
    TrainingRun.objects.filter(status=JobStatus.RUNNING).update(status=JobStatus.QUEUED)
    for run_id in TrainingRun.objects.filter(status=JobStatus.QUEUED).order_by(
        "created_at", "id"
    ).values_list("pk", flat=True):
        submit_training(run_id)


def resume_unfinished_jobs_soon():
    _executor.submit(resume_unfinished_jobs)
