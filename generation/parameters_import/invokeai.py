"""InvokeAI's `invokeai_metadata` chunk: the JSON of its Core Metadata node
(invokeai/app/invocations/metadata.py, CoreMetadataInvocation)."""

from .common import (
    SOURCE_IMAGE_NOTE,
    ImportedParameters,
    ParameterImportError,
    float_value,
    int_value,
    load_json,
    sampler_name_for,
    shorten,
    text_value,
)

# InvokeAI's scheduler names (SCHEDULER_NAME_VALUES) without their "_k" (Karras) suffix.
INVOKEAI_SAMPLERS = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "heun": "Heun",
    "lms": "LMS",
    "pndm": "PLMS",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "deis": "DEIS",
    "kdpm_2": "DPM2",
    "kdpm_2_a": "DPM2 a",
    "dpmpp_2s": "DPM++ 2S",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_3m": "DPM++ 3M",
    "unipc": "UniPC",
    "lcm": "LCM",
    "tcd": "TCD",
}
# Describe the image; nothing to apply or to warn about.
INVOKEAI_INFORMATIONAL = {"app_version", "generation_mode", "rand_device", "init_image",
                          "canvas_v2_metadata", "regions", "_canvas_objects"}
# Off or at the default (0 == False): nothing to report.
INVOKEAI_OFF = (None, [], "", False)
INVOKEAI_HANDLED = {
    "positive_prompt", "negative_prompt", "width", "height", "seed", "cfg_scale", "steps",
    "scheduler", "clip_skip", "model", "loras", "strength",
}


def parse_invokeai_metadata(text) -> ImportedParameters:
    metadata = load_json(text, "InvokeAI metadata")
    if not isinstance(metadata, dict):
        raise ParameterImportError("The InvokeAI metadata is not a JSON object.")
    result = ImportedParameters(source="invokeai")
    get = metadata.get
    if get("positive_prompt") is not None:
        result.values["prompt"] = text_value(get("positive_prompt"), "Positive prompt")
    result.values["negative_prompt"] = text_value(get("negative_prompt") or "", "Negative prompt")
    for key, name, convert in (
        ("width", "width", int_value), ("height", "height", int_value),
        ("seed", "seed", int_value), ("steps", "steps", int_value),
        ("cfg_scale", "guidance_scale", float_value),
    ):
        if get(key) is not None:
            result.values[name] = convert(get(key), key.replace("_", " ").capitalize())
    if get("scheduler") is not None:
        scheduler = text_value(get("scheduler"), "Scheduler")
        base, karras = (scheduler[:-2], "Karras") if scheduler.endswith("_k") else (scheduler, "")
        name = sampler_name_for(INVOKEAI_SAMPLERS.get(base, scheduler), karras, result)
        if name:
            result.values["sampler"] = name
    # InvokeAI counts the layers skipped (0: none); A1111 and the form count from 1.
    result.values["clip_skip"] = int_value(get("clip_skip") or 0, "Clip skip") + 1
    result.values["hires_fix"] = False
    if isinstance(get("model"), dict):
        # InvokeAI 4+ names it "name"; 3.x "model_name". Its hash is BLAKE3, not comparable.
        result.model_name = str(get("model").get("name") or get("model").get("model_name") or "")
    mode = str(get("generation_mode") or "")
    if get("strength") is not None and not mode.endswith("txt2img"):
        result.values["strength"] = float_value(get("strength"), "Strength")
        result.report(*SOURCE_IMAGE_NOTE)
    _invokeai_loras(get("loras"), result)
    for key, value in metadata.items():
        if key not in INVOKEAI_HANDLED | INVOKEAI_INFORMATIONAL and value not in INVOKEAI_OFF:
            result.report(key.replace("_", " ").capitalize(), _describe(value))
    if get("app_version"):
        result.version = shorten(get("app_version"))
    return result


def _invokeai_loras(loras, result):
    """Each LoRA as <lora:name:weight> in the prompt, looked up in the team's library by name
    (InvokeAI's hashes are BLAKE3, which no library here records)."""
    if loras is None:
        return
    if not isinstance(loras, list):
        raise ParameterImportError("The InvokeAI metadata's loras is not a list.")
    for item in loras:
        model = item.get("model") or item.get("lora") if isinstance(item, dict) else None
        name = model.get("name") or model.get("model_name") if isinstance(model, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ParameterImportError("A LoRA in the InvokeAI metadata has no name.")
        weight = float_value(item.get("weight", 1), f"LoRA {shorten(name)} weight")
        result.values["prompt"] = f"{result.values.get('prompt', '')} <lora:{name}:{weight:g}>"
        result.lora_hashes.setdefault(name.strip(), "")


def _describe(value):
    if isinstance(value, dict):
        return value.get("name") or value.get("model_name") or ", ".join(value)
    if isinstance(value, list):
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    return value
