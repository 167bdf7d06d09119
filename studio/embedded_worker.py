"""The embedded mode's worker: the same task code, run in threads of the web process.

One thread pool per kind of Celery worker: generation (as wide as the engine batches, like
a GPU worker's thread pool), training (one run at a time) and CPU work (thumbnails, scans,
purges, the sweeper), so none waits behind another.
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)

_generation = None  # made on first use (_generation_pool)
_generation_lock = threading.Lock()
_training = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-train")
_cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-cpu")

# Submitted tasks not started yet, per pool: what `waiting` tells the sweeper.
_not_started = {}
_not_started_lock = threading.Lock()


def _generation_pool():
    """As wide as the engine batches (STUDIO_MAX_BATCH; by default sized from the device),
    as a GPU worker's thread pool is (studio/celery.py). Made on first use: the engine's
    default needs torch, which only the embedded mode's web process loads."""
    global _generation
    with _generation_lock:
        if _generation is None:
            from gpu_workers.runner import engine_options_from_env

            _generation = ThreadPoolExecutor(
                max_workers=engine_options_from_env()["max_batch"],
                thread_name_prefix="embedded-worker",
            )
        return _generation


def _pool(queue):
    if queue == settings.STUDIO_GPU_QUEUE:
        return _generation_pool()
    if queue == settings.STUDIO_TRAIN_QUEUE:
        return _training
    return _cpu


def _run_task(pool, task, args):
    with _not_started_lock:
        _not_started[pool] -= 1
    close_old_connections()
    try:
        task.run(*args)
    except Exception:
        logger.exception("Task %s%r crashed in the embedded worker", task.name, args)
    finally:
        close_old_connections()


def submit(queue, task, *args):
    """Run a Celery task's code in the pool that stands for the workers of `queue`."""
    pool = _pool(queue)
    with _not_started_lock:
        _not_started[pool] = _not_started.get(pool, 0) + 1
    return pool.submit(_run_task, pool, task, args)


def waiting(queue):
    """Tasks submitted to `queue`'s pool that have not started."""
    with _not_started_lock:
        return _not_started.get(_pool(queue), 0)


_sweeper = None


def start_sweeper():
    """At start: requeue what a previous run of the server left running (nothing else could
    be running it), then sweep every STUDIO_SWEEP_INTERVAL_S, as Celery beat does in the
    distributed mode."""
    global _sweeper
    if _sweeper is not None:
        return
    _sweeper = threading.Thread(target=_sweep_forever, args=(timezone.now(),),
                                name="embedded-sweeper", daemon=True)
    _sweeper.start()


def _sweep_forever(started_at):
    from generation.sweeper import sweep, sweep_after_restart

    stop = threading.Event()
    first = True
    while True:
        close_old_connections()
        try:
            if first:
                sweep_after_restart(started_at)
                first = False
            sweep()
        except Exception:
            logger.exception("The sweeper failed; trying again in %s s",
                             settings.STUDIO_SWEEP_INTERVAL_S)
        finally:
            close_old_connections()
        stop.wait(settings.STUDIO_SWEEP_INTERVAL_S)
