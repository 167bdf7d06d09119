"""Fooocus's own metadata scheme: JSON in the `parameters` chunk (EXIF UserComment in a
JPEG), written by modules/meta_parser.py's FooocusMetadataParser."""

import re

from .comfyui import COMFY_SAMPLERS, COMFY_SCHEDULES
from .common import (
    ImportedParameters,
    ParameterImportError,
    float_value,
    int_value,
    sampler_name_for,
    shorten,
    text_value,
)

# Keys that repeat what is applied, or describe the run.
FOOOCUS_INFORMATIONAL = {
    "full_prompt", "full_negative_prompt", "metadata_scheme", "version", "base_model_hash",
    "refiner_model_hash", "created_by", "performance", "loras",
}
FOOOCUS_HANDLED = {
    "prompt", "negative_prompt", "resolution", "seed", "steps", "guidance_scale", "sampler",
    "scheduler", "base_model",
}
FOOOCUS_OFF = (None, "", "None", "[]", False)


def is_fooocus(metadata, scheme=""):
    """Fooocus's JSON: its scheme is named in the chunk `fooocus_scheme` (EXIF MakerNote)
    or the JSON itself, or its version says Fooocus."""
    return isinstance(metadata, dict) and (
        scheme == "fooocus"
        or metadata.get("metadata_scheme") == "fooocus"
        or str(metadata.get("version", "")).startswith("Fooocus")
    )


def parse_fooocus_metadata(metadata) -> ImportedParameters:
    result = ImportedParameters(source="fooocus")
    get = metadata.get
    result.values["prompt"] = text_value(get("prompt") or "", "Prompt")
    result.values["negative_prompt"] = text_value(get("negative_prompt") or "", "Negative prompt")
    if get("resolution") is not None:
        result.values["width"], result.values["height"] = _resolution(get("resolution"))
    if get("seed") is not None:
        result.values["seed"] = int_value(get("seed"), "Seed")
    if get("steps") is not None:
        result.values["steps"] = int_value(get("steps"), "Steps")
    if get("guidance_scale") is not None:
        result.values["guidance_scale"] = float_value(get("guidance_scale"), "Guidance scale")
    if get("sampler") is not None:
        sampler = text_value(get("sampler"), "Sampler")
        scheduler = text_value(get("scheduler") or "normal", "Scheduler")
        name = sampler_name_for(COMFY_SAMPLERS.get(sampler, sampler),
                                COMFY_SCHEDULES.get(scheduler, scheduler), result)
        if name:
            result.values["sampler"] = name
    result.values["clip_skip"] = 1
    result.values["hires_fix"] = False
    if get("base_model") is not None:
        result.model_name = text_value(get("base_model"), "Base model").strip()
        result.model_hash = str(get("base_model_hash") or "")
    _fooocus_loras(get("loras"), result)
    for key, value in metadata.items():
        if (key not in FOOOCUS_HANDLED | FOOOCUS_INFORMATIONAL
                and not key.startswith("lora_combined_") and value not in FOOOCUS_OFF):
            result.report(key.replace("_", " ").capitalize(), value)
    if get("version"):
        result.version = shorten(str(get("version")).removeprefix("Fooocus").strip())
    return result


def _resolution(value):
    """"(1024, 1024)" as Fooocus writes it (str of a tuple), or a list."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*[(\[]\s*(\d{1,9})\s*,\s*(\d{1,9})\s*[)\]]\s*", value)
        value = [match[1], match[2]] if match else value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int_value(value[0], "Resolution"), int_value(value[1], "Resolution")
    raise ParameterImportError(f"Resolution: “{shorten(value)}” is not a size like (1024, 1024).")


def _fooocus_loras(loras, result):
    """[name, weight, hash] each (the hash: SHA-256, first 10 hex digits)."""
    if loras is None:
        return
    if not isinstance(loras, list):
        raise ParameterImportError("The Fooocus metadata's loras is not a list.")
    for item in loras:
        if not isinstance(item, list) or len(item) < 2 or not isinstance(item[0], str):
            raise ParameterImportError(f"LoRA: “{shorten(item)}” is not [name, weight, hash].")
        name = item[0].strip()
        weight = float_value(item[1], f"LoRA {shorten(name)} weight")
        result.values["prompt"] = f"{result.values['prompt']} <lora:{name}:{weight:g}>"
        result.lora_hashes.setdefault(name, str(item[2]) if len(item) > 2 else "")
