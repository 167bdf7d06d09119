"""The GPU engine's Prometheus metrics (prometheus-client's default registry).

A Celery worker serves them on STUDIO_WORKER_METRICS_PORT (studio.ops.signals); the
embedded mode's web process serves them on /metrics with the rest.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

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
    "Models evicted from the cache to make room for another, by device (cpu: offloaded "
    "weights evicted from host memory).",
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


# The model cache's kinds of model, as MODEL_CACHE_LOOKUPS labels them.
MODEL_KINDS = ("pipeline", "controlnet", "ip_adapter")


@dataclass
class ModelCacheUsage:
    """What the model cache holds for one device: bytes of weights on the device and, with
    CPU offload, in host memory, each beside its budget (None: no limit), and its models."""

    device: str
    device_bytes: int = 0
    device_budget: int | None = None
    host_bytes: int = 0
    host_budget: int | None = None  # None too where the device's models are not offloaded
    models: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODEL_KINDS, 0))


class ModelCacheCollector:
    """The model cache's fill, read from the cache at each scrape: nothing is written when
    models load, are used or are evicted, and a device's series are exactly its models'."""

    def __init__(self, usage: Callable[[], Iterable[ModelCacheUsage]]):
        self._usage = usage

    def describe(self):
        # The registry reads the names here rather than calling collect() when registering.
        return self._families()

    def collect(self):
        used, budget, models = self._families()
        for device in self._usage():
            used.add_metric([device.device, "device"], device.device_bytes)
            if device.device_budget is not None:
                budget.add_metric([device.device, "device"], device.device_budget)
            if device.host_budget is not None or device.host_bytes:
                used.add_metric([device.device, "host"], device.host_bytes)
            if device.host_budget is not None:
                budget.add_metric([device.device, "host"], device.host_budget)
            for kind, count in device.models.items():
                models.add_metric([device.device, kind], count)
        return [used, budget, models]

    @staticmethod
    def _families():
        return [
            GaugeMetricFamily(
                "studio_worker_model_cache_bytes",
                "Bytes of weights the model cache holds for a device's models: on the device "
                "(memory=device; with CPU offload what the offload keeps there at once) and, "
                "with CPU offload, in host memory (memory=host).",
                labels=["device", "memory"],
            ),
            GaugeMetricFamily(
                "studio_worker_model_cache_budget_bytes",
                "The model cache's budget for a device's models (STUDIO_MODEL_CACHE_BYTES) and, "
                "with CPU offload, in host memory (STUDIO_MODEL_CACHE_HOST_BYTES, shared by "
                "every device's offloaded models); none where there is no limit.",
                labels=["device", "memory"],
            ),
            GaugeMetricFamily(
                "studio_worker_model_cache_models",
                "Models in the model cache for a device, by kind (pipeline, controlnet, "
                "ip_adapter).",
                labels=["device", "kind"],
            ),
        ]


def model_cache_watch(usage: Callable[[], Iterable[ModelCacheUsage]]) -> None:
    """Report `usage()` (one ModelCacheUsage per device with models cached) at every scrape."""
    REGISTRY.register(ModelCacheCollector(usage))
