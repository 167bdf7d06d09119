"""Celery worker hooks: serve the worker's metrics, and tag its log lines with task ids."""

import logging

from celery.signals import task_postrun, task_prerun, worker_ready
from django.conf import settings
from prometheus_client import start_http_server

from studio.ops.logging import log_context

logger = logging.getLogger(__name__)

# task id → its entered log_context, left when the task ends (same thread: prerun and
# postrun run in the thread that runs the task).
_task_log_contexts = {}


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


@task_prerun.connect
def task_log_context_enter(task_id=None, **kwargs):
    context = log_context(task_id=task_id)
    context.__enter__()
    _task_log_contexts[task_id] = context


@task_postrun.connect
def task_log_context_exit(task_id=None, **kwargs):
    context = _task_log_contexts.pop(task_id, None)
    if context is not None:
        context.__exit__(None, None, None)
