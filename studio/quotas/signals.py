"""Celery worker hooks: a GPU or training worker reports its GPU as it starts."""

from celery.signals import worker_ready
from django.conf import settings


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
