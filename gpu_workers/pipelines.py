"""Loading diffusers pipelines once per worker and keeping the recently used ones loaded.

The cache is an LRU bounded by a memory budget per device (`WorkerConfig.model_cache_bytes`,
counted in bytes of parameters and buffers): loading a model that does not fit evicts the
least recently used ones on the same device first.
"""

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from gpu_workers.config import WorkerConfig

logger = logging.getLogger(__name__)

# Every mode is built on the txt2img pipeline's components with from_pipe, so a model costs
# its memory once however many modes use it.
MODES = {"txt2img": StableDiffusionPipeline, "img2img": StableDiffusionImg2ImgPipeline}


@dataclass
class _Entry:
    pipelines: dict[str, DiffusionPipeline]  # mode → pipeline, all sharing one set of weights
    nbytes: int


# (source, config) → entry, least recently used first.
_cache: OrderedDict[tuple[str, WorkerConfig], _Entry] = OrderedDict()
# Held while loading, so threads asking for the same model at once load it only once.
_cache_lock = threading.Lock()


def load_pipeline(source: str, config: WorkerConfig, *, mode: str = "txt2img") -> DiffusionPipeline:
    """The pipeline for a Hub id or a local diffusers folder, loaded on first use."""
    key = (source, config)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None:
            # One code path for Hub ids and local folders. Moderation of outputs is the
            # studio's job, so the pipeline's own safety checker is not loaded.
            pipe = StableDiffusionPipeline.from_pretrained(
                source,
                dtype=config.dtype,
                safety_checker=None,
                requires_safety_checker=False,
            )
            # Still on the CPU: room is made on the device before the weights move there.
            entry = _Entry(pipelines={"txt2img": pipe}, nbytes=pipeline_bytes(pipe))
            _make_room(config, entry.nbytes, incoming=source)
            _apply_options(pipe, config)
            _cache[key] = entry
        _cache.move_to_end(key)
        if mode not in entry.pipelines:
            entry.pipelines[mode] = MODES[mode].from_pipe(entry.pipelines["txt2img"])
        return entry.pipelines[mode]


def loaded_sources(config: WorkerConfig | None = None) -> list[str]:
    """Sources with a pipeline in memory (for `config` only, if given), least recently used
    first: the next to be evicted comes first."""
    with _cache_lock:
        return list(
            dict.fromkeys(
                source for source, loaded_with in _cache if config in (None, loaded_with)
            )
        )


def pipeline_bytes(pipe: DiffusionPipeline) -> int:
    """Bytes of every parameter and buffer of the pipeline's models, shared tensors once."""
    tensors = {}
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                tensors[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(tensors.values())


def cache_budget_bytes(config: WorkerConfig) -> int | None:
    if config.model_cache_bytes is not None:
        return config.model_cache_bytes
    if config.device.startswith("cuda"):
        # Weights may take 3/4 of the GPU; activations of a large batch need the rest.
        return torch.cuda.get_device_properties(torch.device(config.device)).total_memory * 3 // 4
    return None


def _make_room(config: WorkerConfig, nbytes: int, *, incoming: str) -> None:
    """Evict least recently used pipelines on config's device until `nbytes` more fit."""
    budget = cache_budget_bytes(config)
    if budget is None:
        return
    on_device = [key for key in _cache if key[1].device == config.device]
    used = sum(_cache[key].nbytes for key in on_device)
    for key in on_device:
        if used + nbytes <= budget:
            break
        used -= _cache.pop(key).nbytes
        logger.info("Evicted %s from %s to make room for %s", key[0], config.device, incoming)
    if used + nbytes > budget:
        # Refusing would leave the worker unable to run this model at all.
        logger.warning(
            "%s needs %d bytes, more than the model cache budget of %d on %s; loading it anyway",
            incoming,
            nbytes,
            budget,
            config.device,
        )
    if config.device.startswith("cuda"):
        torch.cuda.empty_cache()


def _apply_options(pipe: StableDiffusionPipeline, config: WorkerConfig) -> None:
    """Every WorkerConfig option that shapes a loaded pipeline, in one place."""
    processor = AttnProcessor2_0() if config.attention == "sdpa" else AttnProcessor()
    pipe.unet.set_attn_processor(processor)
    pipe.vae.set_attn_processor(processor)
    if config.channels_last:
        # NHWC convolutions are faster on tensor cores.
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if config.vae_slicing:
        pipe.vae.enable_slicing()
    if config.vae_tiling:
        # Only images larger than the VAE's tile size are tiled; small ones decode whole.
        pipe.vae.enable_tiling()
    if config.cpu_offload == "model":
        pipe.enable_model_cpu_offload(device=config.device)
    elif config.cpu_offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=config.device)
    else:
        pipe.to(config.device)
    if config.compile:
        # In place, so pipe.unet keeps its class and config; compiled on the first batch.
        pipe.unet.compile(fullgraph=True)
    # Progress is reported through callbacks; tqdm would only clutter worker logs.
    pipe.set_progress_bar_config(disable=True)
