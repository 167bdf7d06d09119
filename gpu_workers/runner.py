"""Running one generation request on the process's shared engine and waiting for its result."""

import os
import queue
import threading
from collections.abc import Callable

from PIL import Image

from gpu_workers.config import WorkerConfig
from gpu_workers.engine import Engine
from gpu_workers.requests import GenerationRequest, GenerationResult

_engines: dict[WorkerConfig, Engine] = {}
_engines_lock = threading.Lock()


def generate(
    request: GenerationRequest,
    *,
    config: WorkerConfig | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_preview: Callable[[int, Image.Image], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Generate images for `request`, waiting for the result. Concurrent calls for compatible
    requests run as one batch.

    `on_step(step, total)` after every denoising step (1..steps) and `on_preview(step, image)`
    now and then run on the calling thread, so they may use its database connection; all of
    them have run when this returns or raises. `should_cancel()` runs on the engine's thread
    after every step and must be quick and thread-safe (e.g. `threading.Event.is_set`); when
    it returns True the run stops and GenerationCanceled is raised.
    """
    if config is None:
        config = WorkerConfig.from_env()
    updates = queue.SimpleQueue()
    future = shared_engine(config).submit(
        request,
        on_step=lambda step, total: updates.put((on_step, step, total)),
        on_preview=lambda step, image: updates.put((on_preview, step, image)),
        should_cancel=should_cancel,
    )
    while True:
        try:
            callback, *args = updates.get(timeout=0.05)
        except queue.Empty:
            # The engine queues every update before it completes the future: once it is
            # done, an empty queue means nothing more will come.
            if future.done() and updates.empty():
                break
            continue
        if callback is not None:
            callback(*args)
    return future.result()


def shared_engine(config: WorkerConfig) -> Engine:
    """This process's engine for `config`, started on first use: one loop owns the device."""
    with _engines_lock:
        engine = _engines.get(config)
        if engine is None:
            engine = _engines[config] = Engine(config, **engine_options_from_env()).start()
        return engine


def shutdown_engines() -> None:
    """Stop every engine of this process: queued requests fail, running batches finish."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.shutdown()


def engine_options_from_env() -> dict:
    """STUDIO_MAX_BATCH (default 8), STUDIO_MAX_WAIT_MS (25), STUDIO_JOB_TIME_LIMIT_S (none)."""
    options = {
        "max_batch": _positive("STUDIO_MAX_BATCH", int, 8),
        "max_wait_ms": _positive("STUDIO_MAX_WAIT_MS", float, 25.0, allow_zero=True),
    }
    time_limit = _positive("STUDIO_JOB_TIME_LIMIT_S", float, None)
    if time_limit is not None:
        options["job_time_limit_s"] = time_limit
    return options


def _positive(name, kind, default, *, allow_zero=False):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < 0 or (value == 0 and not allow_zero):
        floor = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"{name}={raw!r} is not a number {floor}.")
    return value
