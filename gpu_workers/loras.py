"""LoRAs on a worker: files cached on local disk by SHA-256, adapters kept loaded per
pipeline and switched with `set_adapters` (no reload between jobs that use the same ones).
The same for every family: Stable Diffusion's UNet and text encoders, FLUX.1's and SD 3.x's
transformer and CLIP text encoders (diffusers' FluxLoraLoaderMixin and SD3LoraLoaderMixin
read kohya's, XLabs' and peft's FLUX.1 layouts, peft's SD 3.x one).

A LoRA whose tensors say it was made for another family (gpu_workers.lora_families) is
refused before it is loaded, naming both families; one that loads into none of the
pipeline's models is refused too, since it would change nothing.

Up to `max_loaded_loras` adapters stay loaded per pipeline. Past that, a new LoRA is
hotswapped into the least recently used adapter's slot (its weights copied into the layers
already there: no new modules, so a compiled UNet keeps its graph); a LoRA that doesn't fit
the slot (other layers, text-encoder weights) replaces it by an unload and a load instead.

A batch without LoRAs runs with every adapter disabled, which gives exactly the base
model's output: a LoRA job never leaks into the next job on the worker.
"""

import hashlib
import itertools
import logging
import shutil
import tempfile
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer

from gpu_workers import lora_families
from gpu_workers.config import WorkerConfig
from gpu_workers.pipelines import FAMILY_NAMES, FLUX, SD, SD3, SDXL, pipeline_family
from gpu_workers.requests import GenerationFailed, LoraRef
from gpu_workers.safetensors_header import SafetensorsHeaderError, safetensors_header_read

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024

# pipeline → {adapter name: SHA-256 of the LoRA in that slot}, least recently used first.
_loaded: "weakref.WeakKeyDictionary[object, OrderedDict[str, str]]" = weakref.WeakKeyDictionary()
_slot_numbers = itertools.count()

# The pipeline family (gpu_workers.pipelines) a LoRA of each library family runs on.
LORA_PIPELINE_FAMILY = {
    lora_families.SD15: SD,
    lora_families.SD2: SD,
    lora_families.SDXL: SDXL,
    lora_families.FLUX1: FLUX,
    lora_families.SD3: SD3,
}
# A LoRA family's name where its pipeline family's (FAMILY_NAMES) covers more: SD 1.x and
# 2.x run on the same pipelines.
_LORA_FAMILY_NAMES = {
    lora_families.SD15: "Stable Diffusion 1.x",
    lora_families.SD2: "Stable Diffusion 2.x",
}


def cached_lora_file(lora: LoraRef, config: WorkerConfig) -> Path:
    """The LoRA's file in the local cache, copied there (and its SHA-256 checked) once."""
    cache_dir = Path(config.lora_cache_dir)
    cached = cache_dir / f"{lora.sha256}.safetensors"
    if cached.exists():
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    label = lora.name or lora.source
    try:
        with open(lora.source, "rb") as source, tempfile.NamedTemporaryFile(
            dir=cache_dir, suffix=".part", delete=False
        ) as copy:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                copy.write(chunk)
    except FileNotFoundError as error:
        raise GenerationFailed(f"The LoRA {label} is missing from storage.") from error
    if digest.hexdigest() != lora.sha256:
        Path(copy.name).unlink()
        raise GenerationFailed(
            f"The LoRA {label} changed or is damaged: its SHA-256 is {digest.hexdigest()}, "
            f"the library recorded {lora.sha256}. Upload it again."
        )
    # Renamed into place, so a half-copied file is never taken for a cached one.
    shutil.move(copy.name, cached)
    return cached


def activate_loras(pipe, loras: tuple[LoraRef, ...], config: WorkerConfig) -> None:
    """Make exactly `loras` (with their weights) active on `pipe`; none: all disabled."""
    loaded = _loaded.setdefault(pipe, OrderedDict())
    if not loras:
        if loaded:
            pipe.disable_lora()
        return
    names = []
    for lora in loras:
        name = next((slot for slot, sha256 in loaded.items() if sha256 == lora.sha256), None)
        if name is None:
            name = _load(pipe, loaded, lora, config, in_use=set(names))
        loaded.move_to_end(name)
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
    pipe.enable_lora()
    _evict(pipe, loaded, keep=set(names), limit=config.max_loaded_loras)


def refuse_other_family(pipe, lora: LoraRef, path: Path) -> None:
    """A GenerationFailed naming both families when the LoRA's tensors say it was made for
    another family than `pipe`'s."""
    try:
        header = safetensors_header_read(path, name=lora.name or None)
    except SafetensorsHeaderError as error:
        raise GenerationFailed(str(error)) from error
    shapes = {
        key: entry.get("shape", [])
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict)
    }
    family, evidence = lora_families.lora_family(shapes)
    running = pipeline_family(pipe)
    if family == lora_families.FLUX2:
        raise GenerationFailed(
            f"The LoRA {lora.name or lora.sha256[:12]} is made for FLUX.2 ({evidence}), a "
            f"model family the studio does not run, not for this {FAMILY_NAMES[running]} model."
        )
    if family is None or LORA_PIPELINE_FAMILY[family] == running:
        return
    made_for = _LORA_FAMILY_NAMES.get(family, FAMILY_NAMES[LORA_PIPELINE_FAMILY[family]])
    raise GenerationFailed(
        f"The LoRA {lora.name or lora.sha256[:12]} is made for {made_for} ({evidence}), "
        f"not for this {FAMILY_NAMES[running]} model: use it with a {made_for} model."
    )


def _load(pipe, loaded: OrderedDict, lora: LoraRef, config: WorkerConfig, in_use: set) -> str:
    """Load `lora` into a slot of its own, or hotswap it into the least recently used one
    when every slot is taken; the slot's name."""
    path = cached_lora_file(lora, config)
    refuse_other_family(pipe, lora, path)
    if len(loaded) >= config.max_loaded_loras:
        victim = next((slot for slot in loaded if slot not in in_use), None)
        if victim is not None:
            try:
                pipe.load_lora_weights(str(path), adapter_name=victim, hotswap=True)
            except (ValueError, RuntimeError, KeyError) as error:
                # Other layers or text-encoder weights: unload that slot, load afresh below.
                logger.info("LoRA %s can't be hotswapped: %s", lora.name, str(error)[:200])
                pipe.delete_adapters(victim)
                del loaded[victim]
            else:
                loaded[victim] = lora.sha256
                return victim
    name = f"lora_{next(_slot_numbers)}"
    try:
        with warnings.catch_warnings():
            # Several adapters in one model is the point: they stay loaded.
            warnings.filterwarnings("ignore", "Already found a `peft_config`")
            pipe.load_lora_weights(str(path), adapter_name=name)
    except (ValueError, RuntimeError, KeyError) as error:
        raise GenerationFailed(
            f"The LoRA {lora.name or lora.sha256[:12]} does not fit this model (is it "
            f"made for another base model family?): {str(error)[:200]}"
        ) from error
    _lora_layers_in_compute_dtype(pipe, name)
    if not any(name in names for names in pipe.get_list_adapters().values()):
        raise GenerationFailed(
            f"The LoRA {lora.name or lora.sha256[:12]} has no layers this "
            f"{FAMILY_NAMES[pipeline_family(pipe)]} model has, so it would change nothing: "
            "is it made for another base model family?"
        )
    loaded[name] = lora.sha256
    return name


def _lora_layers_in_compute_dtype(pipe, name: str) -> None:
    """A flow transformer stored in fp8 (WorkerConfig.fp8_transformer: diffusers' layerwise
    casting) gets its new LoRA layers made in fp8 by PEFT, which can't compute in fp8: they
    are kept in the dtype the transformer computes in (hotswaps copy into these layers)."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        return
    for module in transformer.modules():
        if isinstance(module, LoraLayer):
            for layers in (module.lora_A, module.lora_B):
                if name in layers and layers[name].weight.dtype == torch.float8_e4m3fn:
                    layers[name].to(transformer.dtype)


def _evict(pipe, loaded: OrderedDict, *, keep: set[str], limit: int) -> None:
    """Unload the least recently used adapters beyond `limit`, never those in use."""
    for name in list(loaded):
        if len(loaded) <= limit:
            return
        if name not in keep:
            pipe.delete_adapters(name)
            del loaded[name]
