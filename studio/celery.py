"""The Celery app. Workers: `celery -A studio worker -Q gpu` on GPU hosts."""

import os

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def size_gpu_worker(conf, options, **kwargs):
    """A GPU worker takes as many jobs at once as its engine batches (STUDIO_MAX_BATCH; by
    default sized from the GPU's memory, gpu_workers.runner.default_max_batch): each task
    thread only hands its job to the engine and waits. --concurrency still decides."""
    from django.conf import settings

    if options.get("concurrency") or settings.STUDIO_GPU_QUEUE not in (options.get("queues") or []):
        return
    from gpu_workers.runner import engine_options_from_env

    conf.worker_concurrency = engine_options_from_env()["max_batch"]
