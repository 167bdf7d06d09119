"""What the benchmarks share: job timing for plain diffusers and for the engine, summaries,
the machine's description, a FLOP count and the device's matmul rate."""

import datetime
import os
import platform
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import diffusers
import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from gpu_workers.bench.report import cpu_model
from gpu_workers.engine import Engine
from gpu_workers.requests import GenerationRequest

# Prompts of different lengths and content, so batches mix real-looking rows.
PROMPTS = (
    "a lighthouse on a cliff at dusk, oil painting",
    "portrait of an old fisherman, dramatic light, 85mm photo",
    "a cat on the mat",
    "isometric city block, pastel colours, highly detailed",
    "a bowl of ramen, steam, studio lighting",
    "mountain lake at sunrise, mist, wide angle",
    "a robot reading a book in a library",
    "watercolour fox in the snow",
)
NEGATIVE_PROMPTS = ("", "blurry, low quality", "text, watermark")


@dataclass(frozen=True)
class JobTiming:
    """time.perf_counter() readings for one job."""

    submitted: float
    first_step: float
    finished: float


def make_requests(
    model_source: str, count: int, *, width: int, height: int, steps: int, guidance: float
) -> list[GenerationRequest]:
    """`count` compatible requests with different prompts, negative prompts and seeds."""
    return [
        GenerationRequest(
            model_source=model_source,
            prompt=PROMPTS[index % len(PROMPTS)],
            negative_prompt=NEGATIVE_PROMPTS[index % len(NEGATIVE_PROMPTS)],
            steps=steps,
            guidance_scale=guidance,
            width=width,
            height=height,
            seed=1000 + index,
        )
        for index in range(count)
    ]


def run_plain(pipe, requests: list[GenerationRequest], *, device: str, queued: bool) -> dict:
    """Run `requests` one at a time through the pipeline's own __call__, as a peer UI does.

    queued: all were submitted when the first started (a queue of concurrent users), so a
    job's latency includes its wait behind the earlier ones; otherwise each job's latency
    counts from its own start.
    """
    timings = []
    start = time.perf_counter()
    for request in requests:
        submitted = start if queued else time.perf_counter()
        first_step = _FirstStep()
        pipe(
            **plain_call_kwargs(request, device), callback_on_step_end=first_step.pipeline_callback
        )
        _sync(device)
        timings.append(JobTiming(submitted, first_step.at, time.perf_counter()))
    return summarize(timings)


def plain_call_kwargs(request: GenerationRequest, device: str) -> dict:
    return {
        "prompt": request.prompt,
        # An empty one is none, as the engine reads it: SDXL then uses zeros instead of
        # encoding it; SD encodes "" either way.
        "negative_prompt": request.negative_prompt or None,
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "width": request.width,
        "height": request.height,
        "generator": torch.Generator(device).manual_seed(request.seed),
    }


def run_engine(engine: Engine, requests: list[GenerationRequest], *, concurrency: int) -> dict:
    """Run `requests` through a started engine from `concurrency` client threads.

    Like a worker's Celery threads, each client submits its next request as soon as its
    previous one finished; all clients start together. Previews are on, as in the studio.
    """
    pending = queue.SimpleQueue()
    for request in requests:
        pending.put(request)
    start_together = threading.Barrier(concurrency)

    def client() -> list[JobTiming]:
        timings = []
        start_together.wait()
        while True:
            try:
                request = pending.get_nowait()
            except queue.Empty:
                return timings
            first_step = _FirstStep()
            submitted = time.perf_counter()
            future = engine.submit(
                request, on_step=first_step.engine_callback, on_preview=_discard_preview
            )
            future.result()
            timings.append(JobTiming(submitted, first_step.at, time.perf_counter()))

    with ThreadPoolExecutor(concurrency, thread_name_prefix="bench-client") as pool:
        clients = [pool.submit(client) for _ in range(concurrency)]
        # result() re-raises a client's error here.
        return summarize([timing for done in clients for timing in done.result()])


def run_arrivals(
    engine: Engine, requests: list[GenerationRequest], *, rate_per_s: float, seed: int = 0
) -> dict:
    """Submit `requests` to a started engine at Poisson arrival times (exponential gaps,
    `rate_per_s` on average, drawn from `seed`), as independent users arrive, each without
    waiting for the others' images; summarize() plus the offered rate."""
    gaps = np.random.default_rng(seed).exponential(1 / rate_per_s, len(requests))
    finished = {}
    submissions = []
    start = time.perf_counter()
    for request, arrival in zip(requests, start + np.cumsum(gaps), strict=True):
        time.sleep(max(0.0, arrival - time.perf_counter()))
        first_step = _FirstStep()
        submitted = time.perf_counter()
        future = engine.submit(
            request, on_step=first_step.engine_callback, on_preview=_discard_preview
        )
        # Read when the engine completes it, not when this thread gets round to it.
        future.add_done_callback(lambda done: finished.setdefault(done, time.perf_counter()))
        submissions.append((future, submitted, first_step))
    timings = []
    for future, submitted, first_step in submissions:
        future.result()  # re-raises a job's error here
        timings.append(JobTiming(submitted, first_step.at, finished[future]))
    return {**summarize(timings), "offered_rate_per_s": rate_per_s}


def summarize(timings: list[JobTiming]) -> dict:
    """Images per second over the whole run and p50/p95 of the per-job times, in seconds."""
    wall_s = max(t.finished for t in timings) - min(t.submitted for t in timings)
    latencies = [t.finished - t.submitted for t in timings]
    first_steps = [t.first_step - t.submitted for t in timings]
    return {
        "jobs": len(timings),
        "wall_s": wall_s,
        "images_per_s": len(timings) / wall_s,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "first_step_p50_s": percentile(first_steps, 50),
        "first_step_p95_s": percentile(first_steps, 95),
    }


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q))


class _FirstStep:
    """Remembers when a job's first step ended; its methods are the step callbacks."""

    def __init__(self):
        self.at = None

    def engine_callback(self, step: int, total: int) -> None:
        self._mark()

    def pipeline_callback(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self._mark()
        return callback_kwargs

    def _mark(self) -> None:
        if self.at is None:
            self.at = time.perf_counter()


def _discard_preview(step, image) -> None:
    """The engine makes previews only for jobs that ask; the studio's jobs do."""


def quiet_libraries() -> None:
    """No progress bars or dtype advice from diffusers and transformers: the benchmarks'
    output is their numbers. Errors still show."""
    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()


def machine_info(device: str) -> dict:
    """What the numbers were measured on."""
    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        # Other processes on a shared CPU slow the run down; this says how busy it was.
        "load_average": os.getloadavg()[0],
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def count_flops(run) -> int:
    """Floating-point operations of the matmuls, convolutions and attention in `run()`."""
    # PyTorch's counter knows the GPU attention kernels but not the CPU one.
    with FlopCounterMode(
        display=False,
        custom_mapping={
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops
        },
    ) as counter:
        run()
    return counter.get_total_flops()


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def matmul_flops_per_s(device: str, dtype: torch.dtype, *, size: int, repeats: int) -> float:
    """The device's rate on one big square matmul: the best it does on dense math."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _sync(device: str) -> None:
    """Wait for the GPU: a timing read before its queued work finished would be too early."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
