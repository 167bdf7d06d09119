"""Celery worker hooks: serve the worker's metrics, and tag its log lines with task ids."""

import logging

from celery.signals import task_postrun, task_prerun, worker_ready
from django.conf import settings
from prometheus_client import start_http_server

from studio.ops.logging import log_ids_clear, log_ids_set

logger = logging.getLogger(__name__)

@worker_ready.connect
def worker_metrics_serve(**kwargs):
    """The HTTP server now serving this process's metrics, or None."""
    port = settings.STUDIO_WORKER_METRICS_PORT
    if port is None:
        return None
    try:
        server, _thread = start_http_server(port, addr=settings.STUDIO_WORKER_METRICS_ADDR)
    except OSError:
        # Metrics are not worth stopping the worker for; the log says what to fix.
        logger.exception(
            "Worker metrics: could not listen on %s:%d (STUDIO_WORKER_METRICS_PORT); "
            "is another worker on this host using it?",
            settings.STUDIO_WORKER_METRICS_ADDR,
            port,
        )
        return None
    logger.info(
        "Worker metrics on http://%s:%d/metrics", settings.STUDIO_WORKER_METRICS_ADDR, port
    )
    return server


# Set and cleared without context tokens: Celery's threads pool may run a task's prerun
# and postrun hooks in different contexts of its thread, where a token can't be reset.
@task_prerun.connect
def task_log_id_set(task_id=None, **kwargs):
    log_ids_set(task_id=task_id)


@task_postrun.connect
def task_log_id_clear(task_id=None, **kwargs):
    log_ids_clear("task_id")
