"""NovelAI's PNG text chunks: `Software: NovelAI`, the prompt in `Description`, the model
in `Source` and the request's settings as JSON in `Comment`."""

from .comfyui import COMFY_SAMPLERS
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

NOVELAI_SCHEDULES = {"native": "", "karras": "Karras", "exponential": "Exponential",
                     "polyexponential": "Polyexponential"}
# Settings of NovelAI's own (SMEA, CFG rescale, ...): listed when they are not at their
# default, since the image would come out otherwise here.
NOVELAI_DEFAULTS = {"sm": False, "sm_dyn": False, "cfg_rescale": 0, "uncond_scale": 1,
                    "dynamic_thresholding": False, "controlnet_strength": 1}


def is_novelai(chunks):
    return chunks.get("Software", "").strip().startswith("NovelAI") and "Comment" in chunks


def parse_novelai_chunks(chunks) -> ImportedParameters:
    settings = load_json(chunks["Comment"], "NovelAI Comment")
    if not isinstance(settings, dict):
        raise ParameterImportError("The NovelAI Comment is not a JSON object.")
    result = ImportedParameters(source="novelai")
    get = settings.get
    prompt = get("prompt") if get("prompt") is not None else chunks.get("Description", "")
    result.values["prompt"] = text_value(prompt, "Prompt")
    result.values["negative_prompt"] = text_value(get("uc") or "", "Undesired content")
    for key, name, convert, label in (
        ("steps", "steps", int_value, "Steps"), ("scale", "guidance_scale", float_value,
                                                 "Prompt guidance"),
        ("seed", "seed", int_value, "Seed"), ("width", "width", int_value, "Width"),
        ("height", "height", int_value, "Height"),
        ("n_samples", "batch_size", int_value, "Number of images"),
    ):
        if get(key) is not None:
            result.values[name] = convert(get(key), label)
    if get("sampler") is not None:
        sampler = text_value(get("sampler"), "Sampler")
        base = "ddim" if sampler.startswith("ddim") else sampler.removeprefix("k_")
        schedule = text_value(get("noise_schedule") or "native", "Noise schedule")
        name = sampler_name_for(COMFY_SAMPLERS.get(base, sampler),
                                NOVELAI_SCHEDULES.get(schedule, schedule), result)
        if name:
            result.values["sampler"] = name
    result.values["clip_skip"] = 1
    result.values["hires_fix"] = False
    if get("strength") is not None and get("request_type") != "PromptGenerateRequest":
        result.values["strength"] = float_value(get("strength"), "Strength")
        result.report(*SOURCE_IMAGE_NOTE)
    # V4's per-character prompts (placed in the image) have no equivalent here.
    characters = _character_captions(get("v4_prompt"))
    if characters:
        result.report("NovelAI character prompts", len(characters))
    for key, default in NOVELAI_DEFAULTS.items():
        if get(key) not in (None, default):
            result.report(f"NovelAI {key}", get(key))
    # NovelAI's models run only on NovelAI: the view reports it as not in the library.
    result.model_name = shorten(chunks.get("Source", "").strip())
    return result


def _character_captions(v4_prompt):
    caption = v4_prompt.get("caption") if isinstance(v4_prompt, dict) else None
    characters = caption.get("char_captions") if isinstance(caption, dict) else None
    return characters if isinstance(characters, list) else []
