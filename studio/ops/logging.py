"""Ids that every log record carries: which request, job, training run or Celery task.

`with log_context(job_id=...):` sets them for the code inside (contextvars, so each
thread and asyncio task sees its own); `LogContextFilter` copies them onto each record,
where the JSON formatter writes them as fields. Django-free: Celery workers import it.
"""

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

LOG_ID_NAMES = ("request_id", "job_id", "run_id", "task_id")

_log_ids = ContextVar("studio_log_ids", default=MappingProxyType({}))


@contextmanager
def log_context(**ids):
    unknown = sorted(set(ids) - set(LOG_ID_NAMES))
    if unknown:
        raise TypeError(f"log_context takes {', '.join(LOG_ID_NAMES)}, not {', '.join(unknown)}")
    token = _log_ids.set(MappingProxyType({**_log_ids.get(), **ids}))
    try:
        yield
    finally:
        _log_ids.reset(token)


def log_ids_set(**ids):
    """Set ids for the rest of this context (where no `with` block fits, e.g. signal hooks)."""
    _log_ids.set(MappingProxyType({**_log_ids.get(), **ids}))


def log_ids_clear(*names):
    _log_ids.set(MappingProxyType({k: v for k, v in _log_ids.get().items() if k not in names}))


def current_log_ids():
    return dict(_log_ids.get())


class LogContextFilter(logging.Filter):
    def filter(self, record):
        for name, value in _log_ids.get().items():
            # An id passed explicitly with extra={...} wins over the context's.
            if not hasattr(record, name):
                setattr(record, name, value)
        # Django logs a response's 4xx/5xx status after the middleware has left the
        # request's context; the record carries the request itself.
        request_id = getattr(getattr(record, "request", None), "request_id", None)
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True
