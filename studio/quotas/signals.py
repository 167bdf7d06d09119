"""Hooks: a GPU or training worker reports its GPU as it starts (Celery), and the team is
charged for each job and training run that ends (generation.signals)."""

from celery.signals import worker_ready
from django.conf import settings
from django.dispatch import receiver

from generation.signals import job_ended, training_run_ended
from studio.quotas.charging import training_usage_charge, usage_charge


@receiver(job_ended)
def job_charge(sender, *, job, passes, **_):
    usage_charge(job=job, passes=passes)


@receiver(training_run_ended)
def training_run_charge(sender, *, run_id, **_):
    training_usage_charge(run_id=run_id)


@worker_ready.connect
def gpu_report(sender=None, **_):
    """Report this worker's GPU when it consumes the GPU or training queue, so a training
    run larger than every GPU is refused before any job ran (CPU workers load no torch)."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", ())}
    if not queues & {settings.STUDIO_GPU_QUEUE, settings.STUDIO_TRAIN_QUEUE}:
        return
    from generation.leases import worker_name
    from studio.quotas.charging import worker_report_record

    worker_report_record(worker=worker_name())
