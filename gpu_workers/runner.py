"""Running one generation request and waiting for its result."""

import threading
from collections.abc import Callable

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
    should_cancel: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Generate images for `request` on the process's shared engine, waiting for the result.

    `on_step(step, total)` is called after every denoising step (1..steps). `should_cancel()`
    is checked after every step; when it returns True the run stops and GenerationCanceled
    is raised. Concurrent calls for compatible requests run as one batch.
    """
    if config is None:
        config = WorkerConfig.from_env()
    future = shared_engine(config).submit(request, on_step=on_step, should_cancel=should_cancel)
    return future.result()


def shared_engine(config: WorkerConfig) -> Engine:
    """This process's engine for `config`, started on first use: one loop owns the device."""
    with _engines_lock:
        engine = _engines.get(config)
        if engine is None:
            engine = _engines[config] = Engine(config).start()
        return engine
