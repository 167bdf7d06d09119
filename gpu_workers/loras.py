"""LoRAs on a worker: files cached on local disk by SHA-256, adapters kept loaded per
pipeline and switched with `set_adapters` (no reload between jobs that use the same ones).

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

from gpu_workers.config import WorkerConfig
from gpu_workers.requests import GenerationFailed, LoraRef

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024

# pipeline → {adapter name: SHA-256 of the LoRA in that slot}, least recently used first.
_loaded: "weakref.WeakKeyDictionary[object, OrderedDict[str, str]]" = weakref.WeakKeyDictionary()
_slot_numbers = itertools.count()


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


def _load(pipe, loaded: OrderedDict, lora: LoraRef, config: WorkerConfig, in_use: set) -> str:
    """Load `lora` into a slot of its own, or hotswap it into the least recently used one
    when every slot is taken; the slot's name."""
    path = cached_lora_file(lora, config)
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
    loaded[name] = lora.sha256
    return name


def _evict(pipe, loaded: OrderedDict, *, keep: set[str], limit: int) -> None:
    """Unload the least recently used adapters beyond `limit`, never those in use."""
    for name in list(loaded):
        if len(loaded) <= limit:
            return
        if name not in keep:
            pipe.delete_adapters(name)
            del loaded[name]
