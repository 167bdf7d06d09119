"""Where a job goes once committed: a Celery queue, or the in-process worker."""

from django.conf import settings


def enqueue_generation(job_id):
    if settings.CELERY_BROKER_URL:
        from generation.tasks import run_generation_job

        run_generation_job.apply_async(args=[job_id], queue=settings.STUDIO_GPU_QUEUE)
    else:
        from studio import embedded_worker

        embedded_worker.submit_generation(job_id)


def enqueue_training(run_id):
    if settings.CELERY_BROKER_URL:
        from generation.tasks import run_training

        run_training.apply_async(args=[run_id], queue=settings.STUDIO_TRAIN_QUEUE)
    else:
        from studio import embedded_worker

        embedded_worker.submit_training(run_id)
