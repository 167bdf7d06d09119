"""Loading diffusers pipelines once per worker and keeping the recently used ones loaded.

The cache is an LRU bounded by a memory budget per device (`WorkerConfig.model_cache_bytes`,
counted in bytes of parameters and buffers): loading a model (a pipeline, a ControlNet or
an IP-Adapter) that does not fit evicts the least recently used ones on the same device
first. With CPU offload a pipeline's weights live in host memory, bounded by a second budget
(`WorkerConfig.model_cache_host_bytes`), and count on the device only for what the offload
keeps there at once (`pipeline_cache_bytes`).
"""

import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import (
    ControlNetModel,
    DiffusionPipeline,
    FluxControlNetModel,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3ControlNetModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
)
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache

from gpu_workers.checkpoints import (
    FLUX1,
    PICKLE_SUFFIXES,
    CheckpointError,
    checkpoint_architecture,
    flux_transformer_overrides,
    refuse_pickle,
    tensor_names,
)
from gpu_workers.checkpoints import SD3 as CHECKPOINT_SD3
from gpu_workers.config import WorkerConfig
from gpu_workers.ip_adapters import LoadedIPAdapter, read_ip_adapter
from gpu_workers.metrics import (
    MODEL_CACHE_EVICTIONS,
    MODEL_CACHE_LOOKUPS,
    ModelCacheUsage,
    model_cache_watch,
)
from gpu_workers.requests import GenerationFailed

logger = logging.getLogger(__name__)

# Model families as the engine tells them apart: a batch never mixes two (BatchKey.family).
SD = "sd"  # Stable Diffusion 1.x and 2.x: one CLIP text encoder
SDXL = "sdxl"  # two text encoders; the pooled prompt and the sizes are added conditioning
# Diffusion transformers with flow matching (gpu_workers.flow): CLIP's pooled prompt and T5's
# sequence condition them. FLUX.1 embeds a distilled guidance value; SD 3.x runs CFG rows.
FLUX = "flux"
SD3 = "sd3"
FLOW_FAMILIES = frozenset({FLUX, SD3})

# Every mode is built on the txt2img pipeline's components with from_pipe, so a model costs
# its memory once however many modes use it.
MODES = {"txt2img": StableDiffusionPipeline, "img2img": StableDiffusionImg2ImgPipeline}
SDXL_MODES = {
    "txt2img": StableDiffusionXLPipeline,
    "img2img": StableDiffusionXLImg2ImgPipeline,
    "inpaint": StableDiffusionXLInpaintPipeline,
}
# FLUX.1 and SD 3.x run txt2img only so far (issue #17); the engine drives the components.
FLOW_PIPELINES = {FLUX: FluxPipeline, SD3: StableDiffusion3Pipeline}
FAMILY_NAMES = {SD: "Stable Diffusion", SDXL: "SDXL", FLUX: "FLUX.1", SD3: "Stable Diffusion 3.x"}


@dataclass
class _Entry:
    # Bytes of its weights (parameters and buffers) on its config's device, and in host
    # memory: 0 but for a pipeline with CPU offload, whose weights all live there.
    device_bytes: int
    host_bytes: int = 0
    # A checkpoint: mode → pipeline, all sharing one set of weights.
    pipelines: dict[str, DiffusionPipeline] = field(default_factory=dict)
    controlnet: ControlNetModel | None = None  # a ControlNet: its model
    ip_adapter: LoadedIPAdapter | None = None  # an IP-Adapter: its weights and image encoder

    @property
    def kind(self) -> str:
        """Its kind of model, as the cache's metrics label it."""
        if self.controlnet is not None:
            return "controlnet"
        return "ip_adapter" if self.ip_adapter is not None else "pipeline"


# (source, config) → entry, least recently used first.
_cache: OrderedDict[tuple[str, WorkerConfig], _Entry] = OrderedDict()
# Held while loading, so threads asking for the same model at once load it only once.
_cache_lock = threading.Lock()
# Held (inside _cache_lock) for each change to _cache, and by the metrics for each read of
# it: a scrape never waits for a model to load, which can take minutes.
_entries_lock = threading.Lock()
# The config each device's engine serves with (cache_serving), so that its budgets are
# reported from the start, before a model is loaded, and after every one is evicted.
_serving: dict[str, WorkerConfig] = {}


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
        _count_lookup("pipeline", entry)
        if entry is None:
            pipe = _load(source, config, model_config)
            _families[source] = pipeline_family(pipe)
            if config.fp8_transformer:
                _store_transformer_in_fp8(pipe)  # before the count: it halves the weights
            # Still on the CPU: room is made on the device before the weights move there.
            device_bytes, host_bytes = pipeline_cache_bytes(pipe, config)
            entry = _Entry(
                pipelines={"txt2img": pipe}, device_bytes=device_bytes, host_bytes=host_bytes
            )
            _make_room(config, entry, incoming=source)
            _apply_options(pipe, config)
        _use(key, entry)
        if mode not in entry.pipelines:
            txt2img = entry.pipelines["txt2img"]
            family = pipeline_family(txt2img)
            if family in FLOW_FAMILIES:
                raise GenerationFailed(
                    f"{FAMILY_NAMES[family]} models don't support {mode} in the studio yet."
                )
            modes = SDXL_MODES if family == SDXL else MODES
            entry.pipelines[mode] = modes[mode].from_pipe(txt2img)
        return entry.pipelines[mode]


# SD 1.x and 2.x share these pipelines; anything else would fail deep inside the UNet.
SUPPORTED_PIPELINES = frozenset({"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"})
# SDXL base models and their fine-tunes, whatever mode their folder was saved for.
SDXL_PIPELINES = frozenset(
    {
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    }
)
FLUX_PIPELINES = frozenset(
    {
        "FluxPipeline",
        "FluxImg2ImgPipeline",
        "FluxInpaintPipeline",
        "FluxFillPipeline",
        "FluxControlPipeline",  # FLUX.1 Depth and Canny [dev]
    }
)
SD3_PIPELINES = frozenset(
    {
        "StableDiffusion3Pipeline",
        "StableDiffusion3Img2ImgPipeline",
        "StableDiffusion3InpaintPipeline",
    }
)
# A single file's architecture (gpu_workers.checkpoints) → the engine's family.
_ARCHITECTURE_FAMILIES = {"sd15": SD, "sd2": SD, "sdxl": SDXL, FLUX1: FLUX, CHECKPOINT_SD3: SD3}
SDXL_REFINER_REFUSAL = (
    "SDXL refiner models (one text encoder, aesthetic-score conditioning) are not supported "
    "by this worker; choose an SDXL base model or a fine-tune of one."
)

# source → family, for sources loaded or recognised once.
_families: dict[str, str] = {}


def pipeline_family(pipe: DiffusionPipeline) -> str:
    """The engine's family of a loaded pipeline."""
    for family, pipeline_class in FLOW_PIPELINES.items():
        if isinstance(pipe, pipeline_class):
            return family
    return SDXL if isinstance(pipe, tuple(SDXL_MODES.values())) else SD


def model_family(source: str) -> str | None:
    """The engine's family (SD, SDXL, FLUX, SD3) of a source, without loading or downloading
    anything: from the loaded pipeline, a folder's (or the local Hub cache's)
    model_index.json or a single file's header. None when that does not tell (a Hub id not
    in the cache, a source that is not a model): loading it will say why."""
    family = _families.get(source)
    if family is not None:
        return family
    try:
        if is_single_file(source):
            family = _ARCHITECTURE_FAMILIES[checkpoint_architecture(source)]
        else:
            index = Path(source) / "model_index.json"
            if not Path(source).is_dir():
                cached = try_to_load_from_cache(source, "model_index.json")
                if not isinstance(cached, str):
                    return None
                index = Path(cached)
            family = _family_of_class(json.loads(index.read_text())["_class_name"])
    except (CheckpointError, OSError, ValueError, KeyError, TypeError):
        return None
    if family is not None:
        _families[source] = family
    return family


def _family_of_class(class_name: str) -> str | None:
    if class_name in SUPPORTED_PIPELINES:
        return SD
    if class_name in SDXL_PIPELINES:
        return SDXL
    if class_name in FLUX_PIPELINES:
        return FLUX
    if class_name in SD3_PIPELINES:
        return SD3
    return None


def is_single_file(source: str) -> bool:
    return Path(source).suffix.lower() in {".safetensors", *PICKLE_SUFFIXES}


def _load(source: str, config: WorkerConfig, model_config: str | None) -> DiffusionPipeline:
    if is_single_file(source):
        return _load_single_file(source, model_config, config)
    # One code path for Hub ids and local folders.
    family = check_pipeline_class(source)
    if family in FLOW_FAMILIES:
        return FLOW_PIPELINES[family].from_pretrained(source, dtype=config.model_dtype(flow=True))
    if family == SDXL:
        return StableDiffusionXLPipeline.from_pretrained(source, **_load_options(SDXL, config))
    return StableDiffusionPipeline.from_pretrained(source, **_load_options(SD, config))


def _load_options(family: str, config: WorkerConfig) -> dict:
    if family == SDXL:
        return {"dtype": config.dtype}  # SDXL pipelines have no safety checker
    # Moderation of outputs is the studio's job, so the pipeline's own safety checker is not
    # loaded.
    return {"dtype": config.dtype, "safety_checker": None, "requires_safety_checker": False}


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


def check_pipeline_class(source: str) -> str:
    """The family of a folder's or Hub repo's pipeline; refuses, with a message a user can
    act on, pipelines this worker cannot run."""
    class_name = pipeline_class_name(source)
    family = _family_of_class(class_name)
    if family == SDXL and _is_sdxl_refiner(DiffusionPipeline.load_config(source)):
        raise GenerationFailed(SDXL_REFINER_REFUSAL)
    if family is None:
        raise GenerationFailed(
            f"{class_name} models are not supported by this worker: it runs Stable Diffusion "
            "1.x, 2.x, XL and 3.x and FLUX.1 text-to-image pipelines."
        )
    return family


def _is_sdxl_refiner(model_index: dict) -> bool:
    # The refiner has only OpenCLIP's encoder: no first text encoder or tokenizer.
    return not (model_index.get("text_encoder") or [None])[0]


def _load_single_file(
    source: str, model_config: str | None, config: WorkerConfig
) -> DiffusionPipeline:
    path = Path(source)
    try:
        refuse_pickle(path)
        if not path.is_file():
            raise GenerationFailed(f"The checkpoint file {source} does not exist on this worker.")
        architecture = checkpoint_architecture(path)  # the header only: no tensor is read
    except CheckpointError as error:
        raise GenerationFailed(str(error)) from error
    family = _ARCHITECTURE_FAMILIES[architecture]
    if family in FLOW_FAMILIES:
        return _load_flow_single_file(path, family, model_config, config)
    # SDXL base checkpoints hold both text encoders; the refiner only OpenCLIP's.
    if family == SDXL and not any(
        name.startswith("conditioner.embedders.1.") for name in tensor_names(path)
    ):
        raise GenerationFailed(SDXL_REFINER_REFUSAL)
    if model_config and check_pipeline_class(model_config) != family:
        raise GenerationFailed(
            f"{path.name} is an {architecture.upper()} checkpoint but its Diffusers config "
            f"{model_config} is not: set a config of the same architecture."
        )
    pipeline_class = StableDiffusionXLPipeline if family == SDXL else StableDiffusionPipeline
    try:
        return pipeline_class.from_single_file(
            str(path),
            config=model_config or None,
            local_files_only=hub_constants.HF_HUB_OFFLINE,
            **_load_options(family, config),
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


def _load_flow_single_file(
    path: Path, family: str, model_config: str | None, config: WorkerConfig
) -> DiffusionPipeline:
    """A FLUX.1 or SD 3.x transformer from a single file (Black Forest Labs', Stability's or
    diffusers' layout; a file that also holds text encoders or a VAE keeps them unused),
    with the text encoders, tokenizers, VAE and scheduler of `model_config`, as users
    download these models: the transformer alone, the rest from the base model's repo."""
    name = FAMILY_NAMES[family]
    if not model_config:
        raise GenerationFailed(
            f"{path.name} is a single-file {name} transformer: set the model's Diffusers "
            f"config in the library to a {name} diffusers folder or Hub id, whose text "
            "encoders and VAE it runs with."
        )
    if check_pipeline_class(model_config) != family:
        raise GenerationFailed(
            f"{path.name} is a {name} checkpoint but its Diffusers config {model_config} is "
            "not: set a config of the same family."
        )
    transformer_class = FluxTransformer2DModel if family == FLUX else SD3Transformer2DModel
    dtype = config.model_dtype(flow=True)
    # A FLUX.1 Fill file runs with FLUX.1 [dev]'s configs too: its width is its own.
    overrides = flux_transformer_overrides(path) if family == FLUX else {}
    transformer = transformer_class.from_single_file(
        str(path),
        config=model_config,
        subfolder="transformer",
        torch_dtype=dtype,
        local_files_only=hub_constants.HF_HUB_OFFLINE,
        **overrides,
    )
    return FLOW_PIPELINES[family].from_pretrained(
        model_config, transformer=transformer, dtype=dtype
    )


# The ControlNet classes load_controlnet reads, by the _class_name of their config.json.
CONTROLNET_CLASSES_BY_NAME = {
    model_class.__name__: model_class
    for model_class in (ControlNetModel, FluxControlNetModel, SD3ControlNetModel)
}


def load_controlnet(source: str, config: WorkerConfig) -> torch.nn.Module:
    """The ControlNet of a Hub id or local diffusers folder (a ControlNetModel for SD and
    SDXL, a FluxControlNetModel or SD3ControlNetModel for the flow families, by its
    config.json's _class_name), loaded on first use and kept in the model cache, within its
    budget, as pipelines are."""
    key = (source, config)
    with _cache_lock:
        entry = _cache.get(key)
        _count_lookup("controlnet", entry)
        if entry is None:
            try:
                controlnet_class = CONTROLNET_CLASSES_BY_NAME.get(
                    ControlNetModel.load_config(source).get("_class_name"), ControlNetModel
                )
                # A flow family's ControlNet runs beside its transformer, in its dtype.
                dtype = config.model_dtype(flow=controlnet_class is not ControlNetModel)
                controlnet = controlnet_class.from_pretrained(source, dtype=dtype)
            except (OSError, ValueError) as error:
                raise GenerationFailed(
                    f"{source} is not a ControlNet model this worker can read: {error}"
                ) from error
            # Moved to the device whole, offload or not.
            entry = _Entry(device_bytes=module_bytes([controlnet]), controlnet=controlnet)
            _make_room(config, entry, incoming=source)
            # A flow family's ControlNet keeps its transformer's attention processors and
            # layout, as the flow pipelines' transformers do (_apply_options).
            if isinstance(controlnet, ControlNetModel):
                processor = AttnProcessor2_0() if config.attention == "sdpa" else AttnProcessor()
                controlnet.set_attn_processor(processor)
                if config.channels_last:
                    controlnet.to(memory_format=torch.channels_last)
            controlnet.to(config.device)
            controlnet.eval()
        _use(key, entry)
        return entry.controlnet


def load_ip_adapter(source: str, config: WorkerConfig) -> LoadedIPAdapter:
    """The IP-Adapter (weights and CLIP image encoder) of a library source, loaded on first
    use and kept in the model cache, within its budget, as pipelines are."""
    key = (source, config)
    with _cache_lock:
        entry = _cache.get(key)
        _count_lookup("ip_adapter", entry)
        if entry is None:
            adapter = read_ip_adapter(source, config.dtype)
            entry = _Entry(device_bytes=tensor_bytes(adapter.tensors()), ip_adapter=adapter)
            _make_room(config, entry, incoming=source)
            adapter.to(torch.device(config.device))
        _use(key, entry)
        return entry.ip_adapter


def _use(key: tuple[str, WorkerConfig], entry: _Entry) -> None:
    """Store `entry` under `key`, or keep it, as the most recently used model."""
    with _entries_lock:
        _cache[key] = entry
        _cache.move_to_end(key)


def _count_lookup(kind: str, entry: _Entry | None) -> None:
    MODEL_CACHE_LOOKUPS.labels(kind=kind, result="miss" if entry is None else "hit").inc()


def loaded_sources(config: WorkerConfig | None = None) -> list[str]:
    """Sources with a model (pipeline, ControlNet, IP-Adapter) in memory, for `config` only
    if given, least recently used first: the next to be evicted comes first."""
    with _cache_lock:
        return list(
            dict.fromkeys(source for source, loaded_with in _cache if config in (None, loaded_with))
        )


def pipeline_bytes(pipe: DiffusionPipeline) -> int:
    """Bytes of every parameter and buffer of the pipeline's models, shared tensors once."""
    return module_bytes(
        component
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
    )


def pipeline_cache_bytes(pipe: DiffusionPipeline, config: WorkerConfig) -> tuple[int, int]:
    """The bytes the model cache counts for `pipe` loaded with `config`: (on the device, in
    host memory). Without CPU offload every weight is on the device; with it every weight
    lives in host memory and the device holds what the offload moves there at once."""
    weights = pipeline_bytes(pipe)
    if config.cpu_offload == "none":
        return weights, 0
    models = [
        component
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
    ]
    if config.cpu_offload == "model":
        # diffusers moves a whole model to the GPU when it runs and the one before it in the
        # pipeline back, so the largest model is the peak. The engine's continuous batching
        # may leave a small one (a text encoder, the VAE) beside it until the batch ends:
        # the quarter of the GPU kept from the budget for activations covers that.
        return max(module_bytes([model]) for model in models), weights
    # Sequential: accelerate moves each module's own parameters to the GPU for its forward
    # only, so the largest layer's are the peak; buffers stay on the GPU throughout (it
    # offloads them only for models with parameters of their own, which these have not).
    largest_layer = max(
        tensor_bytes(module.parameters(recurse=False))
        for model in models
        for module in model.modules()
    )
    buffers = tensor_bytes(buffer for model in models for buffer in model.buffers())
    return largest_layer + buffers, weights


def module_bytes(modules) -> int:
    """Bytes of every parameter and buffer of `modules`, shared tensors once."""
    return tensor_bytes(
        tensor for module in modules for tensor in (*module.parameters(), *module.buffers())
    )


def tensor_bytes(tensors) -> int:
    """Bytes of `tensors`, shared ones once."""
    sizes = {tensor.data_ptr(): tensor.numel() * tensor.element_size() for tensor in tensors}
    return sum(sizes.values())


def cache_budget_bytes(config: WorkerConfig) -> int | None:
    """Bytes of weights the model cache may keep on config's device; None: no limit."""
    if config.model_cache_bytes is not None:
        return config.model_cache_bytes
    if config.device.startswith("cuda"):
        # Weights may take 3/4 of the GPU; activations of a large batch need the rest.
        return torch.cuda.get_device_properties(torch.device(config.device)).total_memory * 3 // 4
    return None


def host_cache_budget_bytes(config: WorkerConfig) -> int | None:
    """Bytes of offloaded weights the model cache may keep in host memory; None: no offload,
    so no weights of config's there."""
    if config.cpu_offload == "none":
        return None
    if config.model_cache_host_bytes is not None:
        return config.model_cache_host_bytes
    # Half the machine's memory: the rest is for the system, the worker itself and the next
    # model, which loads into host memory before the cache makes room for it.
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def _make_room(config: WorkerConfig, entry: _Entry, *, incoming: str) -> None:
    """Evict least recently used models until `entry` fits: its device bytes in config's
    device budget, and its host bytes (offloaded weights) in the host budget."""
    _evict_until_fits(
        [key for key in _cache if key[1].device == config.device],
        lambda cached: cached.device_bytes,
        entry.device_bytes,
        budget=cache_budget_bytes(config),
        memory=config.device,
        incoming=incoming,
    )
    if entry.host_bytes:
        # Every offloading config's weights share the one host memory, whatever their device.
        _evict_until_fits(
            [key for key in _cache if _cache[key].host_bytes],
            lambda cached: cached.host_bytes,
            entry.host_bytes,
            budget=host_cache_budget_bytes(config),
            memory="cpu",
            incoming=incoming,
        )
    if config.device.startswith("cuda"):
        torch.cuda.empty_cache()


def _evict_until_fits(
    keys: list, bytes_of, nbytes: int, *, budget: int | None, memory: str, incoming: str
) -> None:
    """Evict the models of `keys` (least recently used first) until `nbytes` more fit in
    `budget`, counting each by `bytes_of` its entry."""
    if budget is None:
        return
    used = sum(bytes_of(_cache[key]) for key in keys)
    for key in keys:
        if used + nbytes <= budget:
            break
        with _entries_lock:
            evicted = _cache.pop(key)
        used -= bytes_of(evicted)
        MODEL_CACHE_EVICTIONS.labels(device=memory).inc()
        logger.info("Evicted %s from %s to make room for %s", key[0], memory, incoming)
    if used + nbytes > budget:
        # Refusing would leave the worker unable to run this model at all.
        logger.warning(
            "%s needs %d bytes, more than the model cache budget of %d on %s; loading it anyway",
            incoming,
            nbytes,
            budget,
            memory,
        )


def cache_serving(config: WorkerConfig) -> None:
    """An engine serves with `config` on its device: report the cache's budgets there from
    now on, empty or not."""
    with _entries_lock:
        _serving[config.device] = config


def cache_usage() -> list[ModelCacheUsage]:
    """What the model cache holds per device an engine serves or with models cached, read
    at each scrape: bytes on the device and, for offloaded models, in host memory, within
    the budgets of the device's most recently used model's config, or else the engine's (a
    worker has one config per device)."""
    with _entries_lock:
        entries = list(_cache.items())
        configs = dict(_serving)
    usage = {name: ModelCacheUsage(name) for name in configs}
    for (_, config), entry in entries:  # least recently used first: the last config stays
        device = usage.setdefault(config.device, ModelCacheUsage(config.device))
        configs[config.device] = config
        device.device_bytes += entry.device_bytes
        device.host_bytes += entry.host_bytes
        device.models[entry.kind] += 1
    for name, device in usage.items():
        device.device_budget = cache_budget_bytes(configs[name])
        device.host_budget = host_cache_budget_bytes(configs[name])
    return list(usage.values())


model_cache_watch(cache_usage)


def _store_transformer_in_fp8(pipe: DiffusionPipeline) -> None:
    """WorkerConfig.fp8_transformer: the flow transformer's layer weights stored in fp8
    (e4m3), each layer's cast up to the transformer's dtype while it runs (diffusers'
    layerwise casting; its norms and embeddings stay as they are)."""
    family = pipeline_family(pipe)
    if family not in FLOW_FAMILIES:
        return  # SD's and SDXL's UNets are small enough in fp16
    pipe.transformer.enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn, compute_dtype=pipe.transformer.dtype
    )


def _apply_options(pipe: DiffusionPipeline, config: WorkerConfig) -> None:
    """Every WorkerConfig option that shapes a loaded pipeline, in one place."""
    processor = AttnProcessor2_0() if config.attention == "sdpa" else AttnProcessor()
    # A flow family's transformer keeps its own attention processors (joint attention, rotary
    # positions), which the UNet's would break.
    is_flow = pipeline_family(pipe) in FLOW_FAMILIES
    denoiser = pipe.transformer if is_flow else pipe.unet
    if not is_flow:
        pipe.unet.set_attn_processor(processor)
    pipe.vae.set_attn_processor(processor)
    if config.channels_last and not is_flow:
        # NHWC convolutions are faster on tensor cores.
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if config.fuse_qkv and config.attention == "sdpa":
        # The VAE's always (no adapter touches it); the UNet's per batch (unet_qkv_fused).
        pipe.vae.fuse_qkv_projections()
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
        # Before any adapter: later LoRAs are then hotswapped into the compiled UNet's LoRA
        # layers (gpu_workers.loras) instead of adding layers, which would recompile it.
        pipe.enable_lora_hotswap(target_rank=config.max_lora_rank)
        # In place, so the models keep their class and config; compiled on their first call
        # of each shape (the engine warms the batch buckets up: Engine.warm_up).
        denoiser.compile(fullgraph=True, mode=config.compile_mode)
        pipe.vae.decoder.compile(mode=config.compile_mode)
    # Progress is reported through callbacks; tqdm would only clutter worker logs.
    pipe.set_progress_bar_config(disable=True)


def unet_qkv_fused(pipe: DiffusionPipeline, fused: bool) -> None:
    """Run the UNet's attention with its query, key and value projections fused into one
    matrix product (WorkerConfig.fuse_qkv), or with the separate ones: LoRAs and IP-Adapters
    act on those, so a batch with either runs unfused. The fused weights are made once; the
    base weights never change (adapters are layers beside them)."""
    unet = pipe.unet
    processors = unet.attn_processors.values()
    is_fused = any(isinstance(processor, FusedAttnProcessor2_0) for processor in processors)
    if fused == is_fused:
        return
    if not fused:
        unet.unfuse_qkv_projections()  # the processors it had before
    elif getattr(unet, "original_attn_processors", None) is None:
        unet.fuse_qkv_projections()
    else:
        unet.set_attn_processor(FusedAttnProcessor2_0())
