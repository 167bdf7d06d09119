"""Running one generation request on the process's shared engine and waiting for its result."""

import os
import queue
import threading
import time
from collections.abc import Callable

import torch
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
    """Generate the image for `request`, waiting for the result. Concurrent calls for
    compatible requests run as one batch.

    `on_step(step, total)` after every denoising step (1..steps) and `on_preview(step, image)`
    now and then run on the calling thread, so they may use its database connection; all of
    them have run when this returns or raises. `should_cancel()` runs on the engine's thread
    after every step and must be quick and thread-safe (e.g. `threading.Event.is_set`); when
    it returns True the run stops and GenerationCanceled is raised.
    """
    [result] = generate_all(
        [request],
        config=config,
        on_step=on_step,
        on_preview=on_preview,
        should_cancel=should_cancel,
    )
    return result


def generate_all(
    requests: list[GenerationRequest],
    *,
    config: WorkerConfig | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_preview: Callable[[int, Image.Image], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_wait: Callable[[], None] | None = None,
    wait_interval_s: float = 1.0,
    on_load: Callable[[str, str, int, int], None] | None = None,
) -> list[GenerationResult]:
    """Several images of one job (a batch size above 1), as `generate` makes one.

    The requests are submitted together, so the engine batches them when they fit. A step
    counts once every image has made it; previews show the first image. If one request
    fails or is canceled, so is the whole call (the error of the first one that did).
    `on_wait()` runs on the calling thread about every `wait_interval_s` while no step
    comes (queued, loading the model, decoding): a worker renews its job's lease there.
    `on_load(kind, source, loaded, total)` runs on the calling thread as the engine loads
    the models the first image needs (Engine.submit).
    """
    if config is None:
        config = WorkerConfig.from_env()
    engine = shared_engine(config)
    updates = queue.SimpleQueue()
    steps_made = [0] * len(requests)
    futures = [
        engine.submit(
            request,
            on_step=lambda step, total, row=row: updates.put(("step", row, step, total)),
            on_preview=lambda step, image, row=row: updates.put(("preview", row, step, image)),
            should_cancel=should_cancel,
            on_load=lambda *loading, row=row: updates.put(("load", row, None, loading)),
        )
        for row, request in enumerate(requests)
    ]
    reported = 0
    waited_since = time.monotonic()
    while True:
        if on_wait is not None and time.monotonic() - waited_since >= wait_interval_s:
            on_wait()
            waited_since = time.monotonic()
        try:
            kind, row, step, value = updates.get(timeout=0.05)
        except queue.Empty:
            # The engine queues every update before it completes a future: once all are
            # done, an empty queue means nothing more will come.
            if all(future.done() for future in futures) and updates.empty():
                break
            continue
        if kind == "preview" and row == 0 and on_preview is not None:
            on_preview(step, value)
        elif kind == "load" and row == 0 and on_load is not None:
            on_load(*value)
        elif kind == "step":
            waited_since = time.monotonic()
            steps_made[row] = step
            if min(steps_made) > reported:
                reported = min(steps_made)
                if on_step is not None:
                    on_step(reported, value)
    return [future.result() for future in futures]


def shared_engine(config: WorkerConfig) -> Engine:
    """This process's engine for `config`, started on first use: one loop owns the device."""
    with _engines_lock:
        engine = _engines.get(config)
        if engine is None:
            engine = _engines[config] = Engine(config, **engine_options_from_env(config)).start()
        return engine


def shutdown_engines() -> None:
    """Stop every engine of this process: queued requests fail, running batches finish."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.shutdown()


def engine_options_from_env(config: WorkerConfig | None = None) -> dict:
    """STUDIO_MAX_BATCH (default: default_max_batch), STUDIO_CONTINUOUS_BATCHING (1; 0:
    batch-at-a-time), STUDIO_MAX_WAIT_MS (25, batch-at-a-time only), STUDIO_JOB_TIME_LIMIT_S
    (none). `config`: the engine's (default: WorkerConfig.from_env())."""
    if config is None:
        config = WorkerConfig.from_env()
    continuous = os.environ.get("STUDIO_CONTINUOUS_BATCHING", "1").strip().lower()
    if continuous not in ("0", "1", "true", "false", ""):
        raise ValueError(f"STUDIO_CONTINUOUS_BATCHING={continuous!r} is not 1 or 0.")
    options = {
        "max_batch": _positive("STUDIO_MAX_BATCH", int, default_max_batch(config)),
        "max_wait_ms": _positive("STUDIO_MAX_WAIT_MS", float, 25.0, allow_zero=True),
        "continuous": continuous not in ("0", "false"),
    }
    time_limit = _positive("STUDIO_JOB_TIME_LIMIT_S", float, None)
    if time_limit is not None:
        options["job_time_limit_s"] = time_limit
    return options


GIB = 1024**3
# Of a GPU's memory, what the weights of the largest model a worker usually runs take (SDXL
# in fp16 with its text encoders, about 7 GiB, and room to spare); the rest is for batches.
WEIGHTS_GIB = 10
# Requests per 20 GiB left: SDXL's 1024 px activations with CFG, VAE decode included.
REQUESTS_PER_20_GIB = 8
MAX_DEFAULT_BATCH = 32


def default_max_batch(config: WorkerConfig) -> int:
    """How many requests the engine batches by default: sized from the GPU's memory (8 per
    20 GiB beyond the weights' 10 GiB, 1 to 32: 27 on an 80 GB GPU, 5 on a 24 GB one); 8 on
    a CPU. Independent of how many jobs a worker takes at once (Celery's concurrency)."""
    if not config.device.startswith("cuda"):
        return 8
    total_gib = torch.cuda.get_device_properties(torch.device(config.device)).total_memory / GIB
    fitting = int((total_gib - WEIGHTS_GIB) / 20 * REQUESTS_PER_20_GIB)
    return max(1, min(MAX_DEFAULT_BATCH, fitting))


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
