"""The GPU engine's Prometheus metrics (prometheus-client's default registry).

A Celery worker serves them on STUDIO_WORKER_METRICS_PORT (studio.ops.signals); the
embedded mode's web process serves them on /metrics with the rest.
"""

import torch
from prometheus_client import Counter, Gauge, Histogram

DENOISE_STEPS = Counter(
    "studio_worker_denoise_steps_total",
    "Denoising steps run, one per image per step (rate() of it is the step rate).",
    ["device"],
)
BATCH_SIZE = Histogram(
    "studio_worker_batch_size",
    "Requests in each model call of a running batch (one observation per step: rows join "
    "and leave a batch between steps).",
    ["device"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
)
MODEL_CACHE_LOOKUPS = Counter(
    "studio_worker_model_cache_lookups_total",
    "Model cache lookups, by kind of model (pipeline, controlnet, ip_adapter) and result "
    "(hit: already loaded, miss: loaded from disk or the Hub).",
    ["kind", "result"],
)
MODEL_CACHE_EVICTIONS = Counter(
    "studio_worker_model_cache_evictions_total",
    "Models evicted from the cache to make room for another, by device.",
    ["device"],
)
WARMUP_SECONDS = Gauge(
    "studio_worker_warmup_seconds",
    "Seconds the last model warm-up took: a model call per batch bucket, compiling each with "
    "STUDIO_COMPILE, when the model loaded.",
    ["device"],
)
GPU_MEMORY = Gauge(
    "studio_worker_gpu_memory_bytes",
    "CUDA memory of the engine's device: allocated by tensors, and reserved by the caching "
    "allocator (what nvidia-smi counts).",
    ["device", "kind"],
)


def gpu_memory_watch(device: torch.device) -> None:
    """Read the device's memory at every scrape (CUDA only; CPU engines have none)."""
    if device.type != "cuda":
        return
    name = str(device)
    GPU_MEMORY.labels(device=name, kind="allocated").set_function(
        lambda: torch.cuda.memory_allocated(device)
    )
    GPU_MEMORY.labels(device=name, kind="reserved").set_function(
        lambda: torch.cuda.memory_reserved(device)
    )
