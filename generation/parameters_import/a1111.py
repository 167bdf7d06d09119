"""AUTOMATIC1111's infotext: prompt lines, "Negative prompt:", one line of settings."""

import json
import re

from generation.choices import ModelFamily
from generation.library.hashes import model_hash_backfill
from generation.loras.embeddings.services import job_embeddings, ti_hashes
from generation.loras.services import infotext_prompt, lora_hashes
from gpu_workers.samplers import infotext_schedule_type
from studio import __version__ as studio_version

from .civitai import (
    CIVITAI_INFORMATIONAL,
    CIVITAI_KEYS,
    civitai_fields_apply,
    civitai_json_fields,
)
from .common import (
    HIRES_UPSCALER,
    SOURCE_IMAGE_NOTE,
    ImportedParameters,
    ParameterImportError,
    float_value,
    int_value,
    sampler_name_for,
    shorten,
    size_value,
)

# A1111's own pattern (modules/infotext_utils.py): values are plain up to the next comma,
# or JSON-quoted when they hold a comma, colon or newline. Keys are bounded and the quoted
# value possessive, so the time stays linear in the length of any line.
PARAM_RE = re.compile(r'(\w[\w \-/]{0,79}?)\s*:\s*("(?:\\.|[^\\"])*+"|[^,]*)(?:,|$)')
# The Dynamic Prompts extension's labels (sd_dynamic_prompts/helpers/pnginfo_saver.py).
TEMPLATE_LABEL = "Template"
NEGATIVE_TEMPLATE_LABEL = "Negative Template"
# Forge's fields for flow-matching models (the FLUX.1 [dev] guidance it embeds, and the
# flow shift): lllyasviel/stable-diffusion-webui-forge modules/processing.py
# create_infotext writes "Distilled CFG Scale" (its FLUX.1 UI preset runs "CFG scale: 1",
# modules_forge/main_entry.py); Forge Neo's (Haoming02/sd-webui-forge-classic, branch neo)
# modules/processing.py writes "Shift" for models that take one.
DISTILLED_CFG_LABEL = "Distilled CFG Scale"
SHIFT_LABEL = "Shift"
# Forge's FLUX.1 preset schedule (main_entry.py: flux_t2i_scheduler 'Simple'): on a flow
# model, sigmas evenly spaced in time, which is what the flow families' Euler runs.
FLOW_SCHEDULE_TYPE = "Simple"
# A settings line holds at least one of these (A1111 writes Steps first, always).
A1111_KEYS = {"steps", "sampler", "cfg scale", "seed", "size", "model", "model hash"}
# Fields the form applies; everything else is reported.
A1111_APPLIED = {
    "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model", "Clip skip",
    "Batch size", "Version", "Denoising strength", "Hires upscale", "Hires steps",
    "Hires upscaler", "Variation seed", "Variation seed strength", DISTILLED_CFG_LABEL,
    SHIFT_LABEL,
}
# Kept for the library lookup (parameters_import.library), which reports what it can't use.
A1111_LOOKED_UP = {"Model hash", "Lora hashes"} | CIVITAI_KEYS
# The ControlNet extension's units: "ControlNet 0", "ControlNet 1", ...
CONTROLNET_UNIT_RE = re.compile(r"ControlNet \d")
# Written by A1111 for information only; nothing to apply or to warn about.
# TI hashes: the prompt names its embeddings, which apply again where the team has them.
A1111_INFORMATIONAL = {"Batch pos", "TI hashes"} | CIVITAI_INFORMATIONAL


def templates_split(text):
    """(the infotext, its template, its negative template): the Dynamic Prompts extension
    appends "Template: …" and "Negative Template: …" after the settings line (either may be
    missing; a template may span lines)."""
    for label in (TEMPLATE_LABEL, NEGATIVE_TEMPLATE_LABEL):
        body, marker, rest = text.rpartition(f"\n{label}: ")
        if marker and _settings_fields(body.rsplit("\n", 1)[-1]) is not None:
            if label == TEMPLATE_LABEL:
                template, _, negative = rest.partition(f"\n{NEGATIVE_TEMPLATE_LABEL}: ")
                return body, template.strip(), negative.strip()
            return body, "", rest.strip()
    return text, "", ""


def _settings_fields(line):
    """[(key, raw value)] if `line` is A1111's settings line, else None."""
    if line.startswith("Negative prompt:"):
        return None
    fields, last_end = [], 0
    for match in PARAM_RE.finditer(line):
        _extend_last(fields, line[last_end : match.start()])
        fields.append((match[1].strip(), match[2].strip()))
        last_end = match.end()
    _extend_last(fields, line[last_end:])
    # A prompt line may look like "style: watercolor, mood: calm"; settings hold Steps,
    # Sampler, Seed and the like.
    if any(key.lower() in A1111_KEYS for key, _ in fields):
        return fields
    return None


def _extend_last(fields, skipped):
    """Text between fields is a value's unquoted comma (some extensions write them): A1111
    drops the rest of the value; keep it with the value it belongs to."""
    skipped = skipped.strip(" ,")
    if skipped and fields:
        key, value = fields[-1]
        fields[-1] = (key, f"{value}, {skipped}")


def _unquote(raw, key):
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise ParameterImportError(
                f"{key}: the quoted value {shorten(raw)} is malformed."
            ) from error
        return str(value)
    return raw


def parse_a1111_infotext(text) -> ImportedParameters:
    """A1111's "parameters" text: prompt lines, an optional "Negative prompt:" (which may
    span lines), then one line of "Key: value" settings, and the Dynamic Prompts
    extension's "Template:" and "Negative Template:" after it."""
    if not isinstance(text, str) or not text.strip():
        raise ParameterImportError("The image's parameters text is empty.")
    result = ImportedParameters(source="a1111")
    text, template, negative_template = templates_split(text.strip().replace("\r\n", "\n"))
    if template:
        result.values["template"] = template
    if negative_template:
        result.values["negative_template"] = negative_template
    *lines, last = text.split("\n")
    settings_line, json_fields = civitai_json_fields(last)
    fields = _settings_fields(settings_line)
    if fields is None:
        lines.append(last)
        fields = []
    else:
        fields += json_fields
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    result.values["prompt"] = "\n".join(prompt).strip()
    result.values["negative_prompt"] = "\n".join(negative).strip()
    if not fields:
        result.report("Settings", "none in the image: only the prompts were imported")
        return result

    settings = {}
    for key, raw in fields:
        if key in settings:
            result.report(key, f"given twice; the first value ({shorten(settings[key])}) was used")
            continue
        settings[key] = raw
    values = {
        key: _unquote(raw, key)
        if key in A1111_APPLIED or key in A1111_LOOKED_UP or CONTROLNET_UNIT_RE.fullmatch(key)
        else raw
        for key, raw in settings.items()
    }

    if "Steps" in values:
        result.values["steps"] = int_value(values["Steps"], "Steps")
    _a1111_guidance(values, result)
    # Left out at the model's default (FLUX.1 and SD 3.x), and by every other family.
    result.values["shift"] = (float_value(values[SHIFT_LABEL], SHIFT_LABEL)
                              if SHIFT_LABEL in values else None)
    if "Seed" in values:
        result.values["seed"] = int_value(values["Seed"], "Seed")
    if "Size" in values:
        result.values["width"], result.values["height"] = size_value(values["Size"])
    if "Sampler" in values:
        # A1111 1.9+ reads a missing schedule type as "Automatic", the sampler's default.
        schedule_type = values.get("Schedule type", "Automatic")
        if _is_flow_infotext(values) and schedule_type.strip() in (
            FLOW_SCHEDULE_TYPE, "Automatic"
        ):
            # The flow model's own schedule: the sampler as named, not A1111's "Automatic"
            # one for it (DPM++ 2M's is Karras, which flow models don't run).
            schedule_type = ""
        name = sampler_name_for(values["Sampler"], schedule_type, result)
        if name:
            result.values["sampler"] = name
    elif "Schedule type" in values:
        result.report("Schedule type", values["Schedule type"])
    if "Model" in values:
        result.model_name = values["Model"].strip()
    result.model_hash = values.get("Model hash", "").strip()
    if "Lora hashes" in values:
        result.lora_hashes = _name_hash_pairs(values["Lora hashes"])
    civitai_fields_apply(values, result)
    if "Variation seed strength" in values:
        result.values["variation_strength"] = float_value(
            values["Variation seed strength"], "Variation seed strength"
        )
        if "Variation seed" in values:
            result.values["variation_seed"] = int_value(values["Variation seed"], "Variation seed")
    elif "Variation seed" in values:
        result.report("Variation seed", f"{values['Variation seed']} (no strength given)")
    # A1111 leaves these out at their defaults.
    result.values["clip_skip"] = int_value(values.get("Clip skip", 1), "Clip skip")
    result.values["batch_size"] = int_value(values.get("Batch size", 1), "Batch size")
    _a1111_hires_and_strength(values, result)
    for key in sorted(key for key in values if CONTROLNET_UNIT_RE.fullmatch(key)):
        _a1111_controlnet(values[key], result)
    if "Version" in values:
        result.version = shorten(values["Version"])
    for key, raw in settings.items():
        if (
            key not in A1111_APPLIED
            and key not in A1111_LOOKED_UP
            and key not in A1111_INFORMATIONAL
            and not CONTROLNET_UNIT_RE.fullmatch(key)
        ):
            result.report(key, _unquote_lenient(raw))
    return result


def _is_flow_infotext(values):
    """Whether Forge wrote `values` for a flow-matching model (FLUX.1, SD 3.x)."""
    return DISTILLED_CFG_LABEL in values or SHIFT_LABEL in values


def _a1111_guidance(values, result):
    """The guidance: Forge's "Distilled CFG Scale" for FLUX.1 [dev] (what the recipe's
    guidance scale is for that family), beside a "CFG scale" of 1 (no CFG); else "CFG
    scale"."""
    if DISTILLED_CFG_LABEL in values:
        result.values["guidance_scale"] = float_value(values[DISTILLED_CFG_LABEL],
                                                      DISTILLED_CFG_LABEL)
        cfg = float_value(values.get("CFG scale", 1), "CFG scale")
        if cfg != 1:
            result.report("CFG scale", f"{format_number(cfg)} (FLUX.1 runs with its distilled "
                                       "guidance only, no CFG)")
    elif "CFG scale" in values:
        result.values["guidance_scale"] = float_value(values["CFG scale"], "CFG scale")


def _name_hash_pairs(text):
    """A1111's "Lora hashes" ("name: hash, name: hash") as {name: hash}."""
    pairs = {}
    for part in text.split(","):
        name, _, short_hash = part.rpartition(":")
        if name.strip():
            pairs.setdefault(name.strip(), short_hash.strip())
    return pairs


def _a1111_controlnet(unit, result):
    """A unit of A1111's ControlNet extension ("Module: canny, Model: ..., Weight: 1,
    Threshold A: 100, Threshold B: 200, ..."): a canny unit's weight and thresholds, or an
    IP-Adapter unit's weight, fill the form; the model and the image (not in the PNG) are
    for the user to choose."""
    fields = {}
    for part in unit.split(", "):
        key, _, value = part.partition(": ")
        fields[key.strip()] = value.strip()
    module = fields.get("Module", "")
    if module.startswith("ip-adapter"):
        if "Weight" in fields:
            result.values["ip_adapter_scale"] = float_value(fields["Weight"], "IP-Adapter weight")
        result.report(
            "IP-Adapter",
            f"{fields.get('Model', 'a model')} (choose the IP-Adapter model and its image prompt)",
        )
        return
    if module and module != "canny":
        result.report("ControlNet", f"{module} (only canny edges are supported here)")
        return
    if "Weight" in fields:
        result.values["control_scale"] = float_value(fields["Weight"], "ControlNet weight")
    if module == "canny":
        for key, name in (
            ("Threshold A", "control_low_threshold"),
            ("Threshold B", "control_high_threshold"),
        ):
            if key in fields:
                result.values[name] = int(float_value(fields[key], f"ControlNet {key}"))
    result.report(
        "ControlNet",
        f"{fields.get('Model', 'a model')} (choose the ControlNet model and its control image)",
    )


def _a1111_hires_and_strength(values, result):
    """A1111 writes one "Denoising strength": the hires pass's when there is one (txt2img),
    else img2img's."""
    strength = values.get("Denoising strength")
    if strength is not None:
        strength = float_value(strength, "Denoising strength")
    result.values["hires_fix"] = "Hires upscale" in values
    if "Hires upscale" in values:
        result.values["hires_scale"] = float_value(values["Hires upscale"], "Hires upscale")
        result.values["hires_steps"] = int_value(values.get("Hires steps", 0), "Hires steps")
        if strength is not None:
            result.values["hires_strength"] = strength
        upscaler = values.get("Hires upscaler", HIRES_UPSCALER)
        if upscaler.strip().lower() != HIRES_UPSCALER.lower():
            result.report("Hires upscaler", f"{upscaler} ({HIRES_UPSCALER} is used here)")
    else:
        for key in ("Hires steps", "Hires upscaler"):
            if key in values:
                result.report(key, values[key])
        if strength is not None:
            result.values["strength"] = strength
            result.report(*SOURCE_IMAGE_NOTE)


def _unquote_lenient(raw):
    try:
        return _unquote(raw, "")
    except ParameterImportError:
        return raw


# -- Writing: a job's recipe as A1111 writes its infotext ------------------------------------


def a1111_quote(value):
    """Quote a value the way A1111 does: only when it holds a comma, colon or newline."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_number(value):
    return str(int(value)) if float(value).is_integer() else str(value)


def a1111_infotext(*, prompt, negative_prompt, fields):
    """`fields` is an ordered list of (name, value) pairs; None values are left out."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(
        ", ".join(f"{name}: {a1111_quote(value)}" for name, value in fields if value is not None)
    )
    return "\n".join(lines)


def denoising_strength(recipe):
    """A1111 writes one: the hires pass's when there is one, else that of the image mode."""
    if recipe.hires:
        return format_number(recipe.hires.strength)
    if recipe.mode == "outpaint":
        return "1"  # what it adds is drawn from noise
    if recipe.mode != "txt2img":
        return format_number(recipe.strength)
    return None


def controlnet_unit(recipe, model):
    """A1111's ControlNet extension's unit, as it writes it (quoted by a1111_infotext)."""
    control = recipe.control
    return ", ".join(
        f"{name}: {value}"
        for name, value in [
            ("Module", "canny"),
            ("Model", model.name),
            ("Weight", format_number(control.scale)),
            ("Resize Mode", "Just Resize"),
            ("Threshold A", control.low_threshold),
            ("Threshold B", control.high_threshold),
            ("Guidance Start", 0),
            ("Guidance End", 1),
        ]
    )


def ip_adapter_unit(recipe, model):
    """The IP-Adapter as A1111's ControlNet extension writes it: one more unit, whose
    module names the CLIP image encoder's preprocessor."""
    family = "sdxl" if model.family == "sdxl" else "sd15"
    return ", ".join(
        f"{name}: {value}"
        for name, value in [
            ("Module", f"ip-adapter_clip_{family}"),
            ("Model", model.name),
            ("Weight", format_number(recipe.ip_adapter.scale)),
            ("Resize Mode", "Crop and Resize"),
            ("Guidance Start", 0),
            ("Guidance End", 1),
        ]
    )


def controlnet_units(job, recipe):
    """A1111's "ControlNet 0", "ControlNet 1": the ControlNet first, then the IP-Adapter. A
    control image without a ControlNet model (a FLUX.1 Depth or Canny [dev] model reads it
    itself) is no unit: neither A1111 nor Forge runs such models, and "Model" names it."""
    units = [
        controlnet_unit(recipe, job.control_model) if recipe.control and recipe.control.model
        else None,
        ip_adapter_unit(recipe, job.ip_adapter_model) if recipe.ip_adapter else None,
    ]
    return [(f"ControlNet {number}", unit)
            for number, unit in enumerate(unit for unit in units if unit)]


def recipe_infotext(job, *, seed, sampler, schedule_type=None, variation_seed=None):
    """A1111's infotext of one image of `job` (its recipe; the library's names and hashes),
    its fields in A1111's order (modules/processing.py create_infotext)."""
    recipe = job.recipe()
    job_loras = list(job.job_loras.all())
    model_hash_backfill(model=job.model)
    # FLUX.1 embeds its guidance and runs no CFG: Forge writes the two apart.
    distilled = job.model.family == ModelFamily.FLUX1
    hires, variation = recipe.hires, recipe.variation
    width, height = recipe.canvas_size()
    text = a1111_infotext(
        prompt=infotext_prompt(recipe.prompt, job_loras),
        negative_prompt=recipe.negative_prompt,
        fields=[
            ("Steps", recipe.steps),
            ("Sampler", sampler),
            ("Schedule type", infotext_schedule_type(sampler, schedule_type)),
            ("CFG scale", "1" if distilled else format_number(recipe.guidance_scale)),
            (DISTILLED_CFG_LABEL, format_number(recipe.guidance_scale) if distilled else None),
            (SHIFT_LABEL, None if recipe.shift is None else format_number(recipe.shift)),
            ("Seed", seed),
            ("Size", f"{width}x{height}"),
            ("Model hash", job.model.a1111_hash()),
            ("Model", job.model.name),
            ("Variation seed", variation_seed if variation else None),
            ("Variation seed strength", format_number(variation.strength) if variation else None),
            ("Denoising strength", denoising_strength(recipe)),
            ("Clip skip", recipe.clip_skip if recipe.clip_skip > 1 else None),
            ("Hires upscale", format_number(hires.scale) if hires else None),
            # Only when set: 0 means "as many as the first pass".
            ("Hires steps", (hires.steps or None) if hires else None),
            ("Hires upscaler", HIRES_UPSCALER if hires else None),
            ("Lora hashes", lora_hashes(job_loras)),
            ("TI hashes", ti_hashes(job_embeddings(job))),
            *controlnet_units(job, recipe),
            ("Version", f"studio {studio_version}"),
        ],
    )
    # The Dynamic Prompts extension's lines after the settings (PngInfoSaver).
    if recipe.template:
        text += f"\n{TEMPLATE_LABEL}: {recipe.template}"
    if recipe.negative_template:
        text += f"\n{NEGATIVE_TEMPLATE_LABEL}: {recipe.negative_template}"
    return text
