"""Loading diffusers pipelines once per worker and keeping the recently used ones loaded.

The cache is an LRU bounded by a memory budget per device (`WorkerConfig.model_cache_bytes`,
counted in bytes of parameters and buffers): loading a model that does not fit evicts the
least recently used ones on the same device first.
"""

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from huggingface_hub import constants as hub_constants

from gpu_workers.checkpoints import (
    PICKLE_SUFFIXES,
    CheckpointError,
    checkpoint_architecture,
    refuse_pickle,
)
from gpu_workers.config import WorkerConfig
from gpu_workers.requests import GenerationFailed

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


def load_pipeline(
    source: str,
    config: WorkerConfig,
    *,
    mode: str = "txt2img",
    model_config: str | None = None,
) -> DiffusionPipeline:
    """The pipeline for a Hub id, a local diffusers folder or a local single-file
    `.safetensors` checkpoint, loaded on first use.

    `model_config` (a diffusers folder or Hub id of the same architecture) describes a
    single-file checkpoint's components; without it diffusers fetches the standard configs
    for the checkpoint's architecture from the Hub (or its cache).
    """
    key = (source, config)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None:
            pipe = _load(source, config, model_config)
            # Still on the CPU: room is made on the device before the weights move there.
            entry = _Entry(pipelines={"txt2img": pipe}, nbytes=pipeline_bytes(pipe))
            _make_room(config, entry.nbytes, incoming=source)
            _apply_options(pipe, config)
            _cache[key] = entry
        _cache.move_to_end(key)
        if mode not in entry.pipelines:
            entry.pipelines[mode] = MODES[mode].from_pipe(entry.pipelines["txt2img"])
        return entry.pipelines[mode]


# SD 1.x and 2.x share these pipelines; anything else would fail deep inside the UNet.
SUPPORTED_PIPELINES = frozenset({"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"})
SDXL_REFUSAL = "SDXL models are not supported by this worker yet; choose an SD 1.x or 2.x model."


def is_single_file(source: str) -> bool:
    return Path(source).suffix.lower() in {".safetensors", *PICKLE_SUFFIXES}


def _load(source: str, config: WorkerConfig, model_config: str | None) -> DiffusionPipeline:
    # Moderation of outputs is the studio's job, so the pipeline's own safety checker is not
    # loaded.
    options = {"dtype": config.dtype, "safety_checker": None, "requires_safety_checker": False}
    if is_single_file(source):
        return _load_single_file(source, model_config, options)
    # One code path for Hub ids and local folders.
    check_pipeline_class(source)
    return StableDiffusionPipeline.from_pretrained(source, **options)


def pipeline_class_name(source: str) -> str:
    """`_class_name` from a diffusers folder's or Hub repo's model_index.json; nothing else
    is read or downloaded."""
    try:
        return DiffusionPipeline.load_config(source)["_class_name"]
    except (OSError, ValueError, KeyError) as error:
        raise GenerationFailed(
            f"{source} is not a diffusers pipeline this worker can read (no usable "
            f"model_index.json: {error})."
        ) from error


def check_pipeline_class(source: str) -> None:
    """Refuse, with a message a user can act on, pipelines this worker cannot run."""
    class_name = pipeline_class_name(source)
    if class_name in SUPPORTED_PIPELINES:
        return
    if "StableDiffusionXL" in class_name:
        raise GenerationFailed(SDXL_REFUSAL)
    raise GenerationFailed(
        f"{class_name} models are not supported by this worker: it runs Stable Diffusion 1.x "
        "and 2.x text-to-image pipelines."
    )


def _load_single_file(source: str, model_config: str | None, options: dict) -> DiffusionPipeline:
    path = Path(source)
    try:
        refuse_pickle(path)
        if not path.is_file():
            raise GenerationFailed(f"The checkpoint file {source} does not exist on this worker.")
        architecture = checkpoint_architecture(path)  # the header only: no tensor is read
    except CheckpointError as error:
        raise GenerationFailed(str(error)) from error
    if architecture == "sdxl":
        raise GenerationFailed(SDXL_REFUSAL)
    if model_config:
        check_pipeline_class(model_config)
    try:
        return StableDiffusionPipeline.from_single_file(
            str(path),
            config=model_config or None,
            local_files_only=hub_constants.HF_HUB_OFFLINE,
            **options,
        )
    except Exception as error:
        if model_config or not hub_constants.HF_HUB_OFFLINE:
            raise
        raise GenerationFailed(
            f"{path.name} needs the component configs of a standard {architecture} model, "
            "which are not in this worker's Hugging Face cache, and downloads are off "
            "(HF_HUB_OFFLINE). Set the model's Diffusers config in the library to a local "
            "diffusers folder of the same architecture."
        ) from error


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
