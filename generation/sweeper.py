"""The sweeper: whatever happened to broker messages, the database's work gets done.

Run every STUDIO_SWEEP_INTERVAL_S by Celery beat (distributed mode) or a thread of the
server (embedded mode). Every step is a conditional update or counts what is missing, so
any number of sweepers may run at once. Each pass:

1. takes back jobs and training runs whose worker's lease lapsed (it died): queued again,
   or canceled/failed (generation.leases.lapsed_outcome);
2. sends wake-up messages for queued work the broker holds no message for (a Redis that
   restarted empty, a message acked by a task that hit a dead database): messages name no
   particular job, so it sends as many as queued rows outnumber waiting messages;
3. sends again the thumbnails and scans of images whose messages were lost.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from generation.choices import JobStatus
from generation.dispatch import enqueue_generation, enqueue_training
from generation.leases import Leased, lapsed, lapsed_release
from generation.models import GenerationJob
from generation.training.models import TrainingRun
from studio.dispatch import waiting
from studio.ops.metrics import SWEEPER_ACTIONS
from studio.realtime.event_types import EventType
from studio.realtime.events import publish

logger = logging.getLogger(__name__)

# Work whose result is this old without showing has lost its message...
SIDE_EFFECT_GRACE = timedelta(seconds=30)
# ... and is sent again for this long, so work that always fails isn't retried forever.
SIDE_EFFECT_RETRY_WINDOW = timedelta(hours=6)
SIDE_EFFECTS_PER_PASS = 200
WAKE_UPS_PER_PASS = 1000
# The apps above this one repair their own lost work (thumbnails, scans) in each pass: they
# register a repair ({action: count}) from their AppConfig.ready(), so the sweeper runs them
# without importing them.
REPAIRS: list[Callable[[], dict[str, int]]] = []


def repair_register(repair: Callable[[], dict[str, int]]) -> None:
    if repair not in REPAIRS:
        REPAIRS.append(repair)
# What a lapsed row's project hears when the sweeper fails or cancels it, by kind of row.
FAILED_EVENTS = {"job": EventType.JOB_FAILED, "training": EventType.TRAINING_FAILED}
CANCELED_EVENTS = {"job": EventType.JOB_CANCELED, "training": EventType.TRAINING_CANCELED}


def sweep() -> dict[str, int]:
    """One pass; returns what it did, {action: count}."""
    done: dict[str, int] = {}
    for kind, model in (("job", GenerationJob), ("training", TrainingRun)):
        for status, count in lapsed_take_back(model, kind).items():
            done[f"{kind}_lapsed_{status}"] = count
    done["job_wake_ups"] = wake_ups_send(
        GenerationJob, enqueue_generation, settings.STUDIO_GPU_QUEUE
    )
    done["training_wake_ups"] = wake_ups_send(
        TrainingRun, enqueue_training, settings.STUDIO_TRAIN_QUEUE
    )
    for repair in REPAIRS:
        done.update(repair())
    done = {action: count for action, count in done.items() if count}
    for action, count in done.items():
        SWEEPER_ACTIONS.labels(action=action).inc(count)
    if done:
        logger.info("Sweeper: %s", ", ".join(f"{a}={c}" for a, c in sorted(done.items())))
    return done


def sweep_after_restart(started_at: datetime) -> None:
    """Embedded mode, at start: what the previous server process was running died with it
    (no other process runs its work), so its leases count as lapsed now. Work this process
    claimed since it started at `started_at` is its own, and left alone."""
    for model in (GenerationJob, TrainingRun):
        model.objects.filter(status=JobStatus.RUNNING, started_at__lt=started_at).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )


def lapsed_take_back(model: type[Leased], kind: str) -> dict[JobStatus, int]:
    """Lapsed rows of `model` released; {new status: count}. Their project hears of it."""
    counts: dict[JobStatus, int] = {}
    for row in lapsed(model).select_related("project"):
        worker = row.worker  # released, the row no longer names it
        status = lapsed_release(row)
        if status is None:
            continue
        counts[status] = counts.get(status, 0) + 1
        logger.warning("%s %s: its worker %s stopped; now %s", kind, row.pk, worker or "?",
                       status)
        if status == JobStatus.FAILED:
            publish(row.project.events_group(),
                    row.event_payload(type=FAILED_EVENTS[kind], error=row.error))
        elif status == JobStatus.CANCELED:
            publish(row.project.events_group(), row.event_payload(type=CANCELED_EVENTS[kind]))
        elif kind == "job":
            publish(row.project.events_group(), row.event_payload(type=EventType.JOB_QUEUED))
    return counts


def wake_ups_send(
    model: type[Leased], enqueue: Callable[[int], None], queue: str
) -> int:
    """One message for every queued row the broker has no waiting message for."""
    queued = list(
        model.objects.filter(status=JobStatus.QUEUED)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:WAKE_UPS_PER_PASS]
    )
    missing = len(queued) - waiting(queue)
    for pk in queued[:max(missing, 0)]:
        enqueue(pk)
    return max(missing, 0)
