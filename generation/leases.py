"""A worker's hold on a generation job or a training run: claim, lease, attempts.

One implementation for both kinds of work (GenerationJob and TrainingRun share the fields
status, claims, attempts, lease_expires_at, worker, cancel_requested_at).

- A claim takes a queued row with one conditional UPDATE and numbers it (`claims`), so two
  messages never both run it, and an attempt writes only while its claim is the row's
  latest: once the sweeper has taken a lapsed row back, the old attempt's writes find
  nothing and it stops.
- The lease is renewed at every step and while a model loads; a lapsed lease means the
  worker died, and the sweeper (generation.sweeper) hands the row to another.
- `attempts` counts attempts that did work (reached a first step), so a worker killed
  while loading a model doesn't use up a job's attempts; `claims` bounds those too.
"""

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import F, QuerySet
from django.utils import timezone

from generation.choices import JobStatus
from generation.models import GenerationJob
from generation.training.models import TrainingRun

# The two kinds of row a worker holds.
Leased = GenerationJob | TrainingRun

# A database that can't be reached now (a restart, a failover): work is retried, never
# failed for it; a lease it kept from being renewed lapses and the sweeper requeues.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def lease_deadline() -> datetime:
    return timezone.now() + timedelta(seconds=settings.STUDIO_JOB_LEASE_S)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(model: type[Leased], pk: int, **fields: Any) -> "Hold | None":
    """Take the queued row `pk`; its Hold, or None when it isn't queued any more."""
    claimed = model.objects.filter(pk=pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        claims=F("claims") + 1,
        started_at=timezone.now(),
        progress_step=0,
        lease_expires_at=lease_deadline(),
        worker=worker_name(),
        **fields,
    )
    if not claimed:
        return None
    claims = model.objects.filter(pk=pk).values_list("claims", flat=True).get()
    return Hold(model, pk, claims)


class Hold:
    """One attempt's hold on a claimed row. Every write goes through it."""

    def __init__(self, model: type[Leased], pk: int, claims: int) -> None:
        self.rows: QuerySet[Leased] = model.objects.filter(
            pk=pk, status=JobStatus.RUNNING, claims=claims
        )
        self.worked = False

    def renew(self, **fields: Any) -> bool:
        """Renew the lease, writing `fields` with it. False once the row is no longer ours."""
        return bool(self.rows.update(lease_expires_at=lease_deadline(), **fields))

    def worked_on(self, **fields: Any) -> bool:
        """Renew at a step of work; the first one counts the attempt."""
        if not self.worked:
            fields["attempts"] = F("attempts") + 1
            self.worked = True
        return self.renew(**fields)

    def cancel_requested(self) -> bool:
        return self.rows.filter(cancel_requested_at__isnull=False).exists()

    def end(self, status: JobStatus, **fields: Any) -> bool:
        """Record how the attempt ended; False (nothing written) if the row isn't ours."""
        return bool(self.rows.update(status=status, finished_at=timezone.now(), **fields))


def lapsed(model: type[Leased]) -> QuerySet[Leased]:
    """Rows running on a worker whose lease lapsed: it died or stalled."""
    return model.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=timezone.now())


def lapsed_outcome(row: Leased) -> tuple[JobStatus, str]:
    """What becomes of a lapsed row: (status, error). Queued again unless its owner asked to
    cancel it or its workers kept dying."""
    if row.cancel_requested_at is not None:
        return JobStatus.CANCELED, "Canceled; its worker had stopped."
    if row.attempts >= settings.STUDIO_JOB_MAX_ATTEMPTS:
        return JobStatus.FAILED, (
            f"The worker stopped during each of {row.attempts} attempts; giving up. Retry "
            "with a smaller size or fewer steps, or ask an admin to check the workers."
        )
    if row.claims >= settings.STUDIO_JOB_MAX_CLAIMS:
        return JobStatus.FAILED, (
            f"Workers stopped {row.claims} times before this could start; giving up. Ask an "
            "admin to check the workers."
        )
    return JobStatus.QUEUED, ""


def lapsed_release(row: Leased) -> JobStatus | None:
    """Take a lapsed row back from its dead worker: queued again, or ended as
    `lapsed_outcome` says. Returns the new status, or None when another sweeper or the
    worker itself got there first."""
    status, error = lapsed_outcome(row)
    fields: dict[str, Any] = {"status": status, "error": error, "lease_expires_at": None}
    if status == JobStatus.QUEUED:
        fields.update(progress_step=0, worker="")
    else:
        fields["finished_at"] = timezone.now()
    released = type(row).objects.filter(
        pk=row.pk, status=JobStatus.RUNNING, claims=row.claims,
        lease_expires_at__lt=timezone.now(),
    ).update(**fields)
    if not released:
        return None
    for name, value in fields.items():
        setattr(row, name, value)
    return status
