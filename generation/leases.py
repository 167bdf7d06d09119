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
- A worker renews the holds of all the jobs it runs together (`worked_on_together`): one
  UPDATE and one query for all of them at each progress report, however many there are.
"""

import enum
import os
import socket
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import Case, F, Q, QuerySet, Value, When
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


class Standing(enum.Enum):
    """How a held row stands, as a renewal finds it."""

    HELD = "held"
    CANCEL_REQUESTED = "cancel requested"  # still ours; its owner asked to stop it
    LOST = "lost"  # another attempt holds it now, or it ended


class Hold:
    """One attempt's hold on a claimed row. Every write goes through it."""

    def __init__(self, model: type[Leased], pk: int, claims: int) -> None:
        self.model, self.pk, self.claims = model, pk, claims
        # The row while this attempt's claim is its latest, and while it runs.
        self.claimed_row = Q(pk=pk, claims=claims)
        self.ours = self.claimed_row & Q(status=JobStatus.RUNNING)
        self.rows: QuerySet[Leased] = model.objects.filter(self.ours)
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

    def renewed(self) -> Standing:
        """Renew the lease alone (no step made); how the row stands."""
        if not self.renew():
            return Standing.LOST
        return Standing.CANCEL_REQUESTED if self.cancel_requested() else Standing.HELD

    def end(self, status: JobStatus, **fields: Any) -> bool:
        """Record how the attempt ended; False (nothing written) if the row isn't ours."""
        return bool(self.rows.update(status=status, finished_at=timezone.now(), **fields))


def worked_on_together(steps: Mapping[Hold, int]) -> dict[Hold, Standing]:
    """Renew many holds at a step of work, as `Hold.worked_on(progress_step=step)` does each:
    one UPDATE per kind of row writes every row's own step and new lease (and counts the
    attempt of each hold at its first step), each row only while its claim is the hold's;
    then one query reads which rows are still held and which their owners asked to cancel."""
    by_model: dict[type[Leased], dict[Hold, int]] = defaultdict(dict)
    for hold, step in steps.items():
        by_model[hold.model][hold] = step
    standings: dict[Hold, Standing] = {}
    for model, model_steps in by_model.items():
        standings.update(_worked_on_together(model, model_steps))
    return standings


def _worked_on_together(model: type[Leased], steps: dict[Hold, int]) -> dict[Hold, Standing]:
    ours = reduce(or_, (hold.ours for hold in steps))
    fields: dict[str, Any] = {
        "lease_expires_at": lease_deadline(),
        "progress_step": Case(
            *(When(hold.claimed_row, then=Value(step)) for hold, step in steps.items()),
            default=F("progress_step"),
            output_field=model._meta.get_field("progress_step"),
        ),
    }
    first = [hold for hold in steps if not hold.worked]
    if first:
        fields["attempts"] = Case(
            *(When(hold.claimed_row, then=F("attempts") + 1) for hold in first),
            default=F("attempts"),
            output_field=model._meta.get_field("attempts"),
        )
    model.objects.filter(ours).update(**fields)
    for hold in first:
        hold.worked = True
    held = {
        (pk, claims): cancel_requested_at is not None
        for pk, claims, cancel_requested_at in model.objects.filter(ours).order_by().values_list(
            "pk", "claims", "cancel_requested_at"
        )
    }
    standings = {}
    for hold in steps:
        canceled = held.get((hold.pk, hold.claims))
        if canceled is None:
            standings[hold] = Standing.LOST
        else:
            standings[hold] = Standing.CANCEL_REQUESTED if canceled else Standing.HELD
    return standings


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
