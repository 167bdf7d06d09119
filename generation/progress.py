"""The progress of every job a worker process runs, written together (issue #16).

Each job hands its newest step here as it makes it. At most every
STUDIO_PROGRESS_INTERVAL_S, and at once for a job's first and last step, one write covers
every job with a step not written yet: one UPDATE renews all their leases with each row's
own step, one query says which rows are still held and which their owners asked to cancel
(`generation.leases.worked_on_together`), then each job hears how its row stands and
gives the event to publish, and the events go out together: one channel-layer send per
project and one cache write for the previews. The job thread that finds a write due makes
it, for all of them; the engine's loop never does (gpu_workers.runner calls back on each
job's own thread).
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from generation.leases import TRANSIENT_ERRORS, Hold, Standing, worked_on_together
from generation.models import GenerationJob
from studio.realtime.events import publish_all

logger = logging.getLogger(__name__)

# An event to publish: (group, payload).
Published = tuple[str, dict]
# Told the step written and how the job's row stands, on the thread that wrote it; gives
# the event to publish, if any.
Written = Callable[[int, Standing], Published | None]


@dataclass
class _Report:
    step: int
    written: Written


class ProgressWriter:
    """A process's pending progress reports, one per hold: the newest step of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _pending and _written_at
        # Held through a whole write, its events included: `end` waits one out.
        self._writing = threading.Lock()
        self._pending: dict[Hold, _Report] = {}
        self._written_at = -math.inf  # when the last write began (time.monotonic)

    def report(self, hold: Hold, step: int, written: Written, *, due: bool = False) -> None:
        """`hold`'s job made `step`: written with the others' when a write is due, or now
        when `due` (its first and last step), this thread waiting for a write under way.
        `written` is told how it went: later, or before this returns if this thread writes."""
        with self._lock:
            self._pending[hold] = _Report(step, written)
            if not due and not self._interval_passed():
                return
        if not self._writing.acquire(blocking=due):
            return  # another thread writes now; this step goes with the next write
        try:
            self._write(due_for=hold if due else None)
        finally:
            self._writing.release()

    def end(self, hold: Hold) -> None:
        """`hold`'s job ends: its step not written yet is dropped, and a write under way
        (perhaps with its step) finishes first, so none of its progress is published after
        this returns."""
        with self._writing, self._lock:
            self._pending.pop(hold, None)

    def _interval_passed(self) -> bool:
        return time.monotonic() - self._written_at >= settings.STUDIO_PROGRESS_INTERVAL_S

    def _write(self, *, due_for: Hold | None) -> None:
        with self._lock:
            due = due_for in self._pending if due_for is not None else self._interval_passed()
            if not due or not self._pending:
                return
            reports, self._pending = self._pending, {}
            self._written_at = time.monotonic()
        try:
            standings = worked_on_together({hold: report.step for hold, report in reports.items()})
        except TRANSIENT_ERRORS:
            # Not a job's failure: its steps go with the next write, and should the database
            # stay away longer than the lease, the sweeper hands the job on.
            logger.warning(
                "Could not write the progress of %d jobs; trying at the next report",
                len(reports), exc_info=True,
            )
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()  # the next write connects again
            with self._lock:
                for hold, report in reports.items():
                    self._pending.setdefault(hold, report)  # unless a newer step came
            return
        published = []
        for hold, report in reports.items():
            try:
                event = report.written(report.step, standings[hold])
            except Exception:
                # One job's broken report is no other job's.
                logger.exception("Reporting step %d of a job failed", report.step)
                continue
            if event is not None:
                published.append(event)
        progress_publish(published)


def progress_publish(published: list[Published]) -> None:
    """Publish the events of one write together, their previews kept first for those who
    poll for them (GenerationJob.latest_preview)."""
    previews = {
        payload["job_id"]: payload["preview"] for _, payload in published if "preview" in payload
    }
    try:
        GenerationJob.previews_keep(previews)
    except Exception:
        # A cache away loses previews, as publishing loses events: never a job's failure.
        logger.warning("Could not keep the previews of %d jobs", len(published), exc_info=True)
    publish_all(published)


# This process's writer: every job it runs reports through it.
writer = ProgressWriter()
