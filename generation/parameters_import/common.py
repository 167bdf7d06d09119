"""What every source shares: the result, the error, value conversions, sampler names."""

import json
import math
import re
from dataclasses import dataclass, field

from gpu_workers.samplers import A1111_AUTOMATIC_SCHEDULES, SAMPLERS, UNIFORM_SCHEDULE

SOURCE_LABELS = {"studio": "this studio", "a1111": "AUTOMATIC1111", "comfyui": "ComfyUI",
                 "invokeai": "InvokeAI", "novelai": "NovelAI", "fooocus": "Fooocus"}
# The order a summary lists the form fields in.
FIELD_LABELS = {
    "prompt": "prompt",
    "negative_prompt": "negative prompt",
    "model": "model",
    "width": "size",
    "steps": "steps",
    "guidance_scale": "CFG scale",
    "sampler": "sampler",
    "seed": "seed",
    "clip_skip": "clip skip",
    "shift": "shift",
    "batch_size": "batch size",
    "strength": "denoising strength",
    "hires_fix": "hires fix",
    "control_scale": "ControlNet weight",
    "control_low_threshold": "canny thresholds",
    "ip_adapter_scale": "image prompt weight",
    "variation_seed": "variation seed",
    "variation_strength": "variation strength",
}
HIRES_UPSCALER = "Lanczos"  # the one upscaler the hires fix has here
SOURCE_IMAGE_NOTE = ("Source image", "none in the file (img2img); pick one under From an image")
MAX_NOTE_VALUE = 60  # characters of a value shown in the "not applied" list


class ParameterImportError(ValueError):
    """The file cannot be imported; the message says why, for the user."""


@dataclass
class ImportedParameters:
    source: str  # a key of SOURCE_LABELS
    values: dict = field(default_factory=dict)  # GenerationForm field -> value
    model_name: str = ""  # as the source names it; matched against the library by the view
    model_hash: str = ""  # A1111's "Model hash" (SHA-256, first 10 hex) or a full SHA-256
    lora_hashes: dict = field(default_factory=dict)  # LoRA name -> hash, for the library
    not_applied: list[str] = field(default_factory=list)
    version: str = ""  # what made the image, when the metadata says

    @property
    def source_label(self):
        label = SOURCE_LABELS[self.source]
        return f"{label} {self.version}" if self.version else label

    def applied_labels(self, *, model_applied):
        return [
            label
            for name, label in FIELD_LABELS.items()
            # None clears a field to its default (the shift): nothing to name.
            if self.values.get(name) is not None or (name == "model" and model_applied)
        ]

    def report(self, label, value=None):
        """Note something the form does not apply, once."""
        note = label if value is None else f"{label}: {shorten(value)}"
        if note not in self.not_applied:
            self.not_applied.append(note)

    def reported_labels(self):
        return {note.split(": ", 1)[0] for note in self.not_applied}


def shorten(value):
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_NOTE_VALUE else text[: MAX_NOTE_VALUE - 1] + "…"


def display_name(file_name):
    """An uploaded file's name as the messages show it."""
    return shorten(file_name.replace("\\", "/").rsplit("/", 1)[-1]) or "the image"




def int_value(value, label):
    if isinstance(value, bool):
        raise ParameterImportError(f"{label}: “{shorten(value)}” is not a whole number.")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,30}\s*", value):
        return int(value)
    raise ParameterImportError(f"{label}: “{shorten(value)}” is not a whole number.")


def float_value(value, label):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(
        r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value
    ):
        number = float(value)
    else:
        raise ParameterImportError(f"{label}: “{shorten(value)}” is not a number.")
    if not math.isfinite(number):
        raise ParameterImportError(f"{label}: “{shorten(value)}” is not a finite number.")
    return number


def text_value(value, label):
    if not isinstance(value, str):
        raise ParameterImportError(f"{label} is not text in the image's metadata.")
    return value


def size_value(value, label="Size"):
    match = re.fullmatch(r"\s*(\d{1,9})\s*x\s*(\d{1,9})\s*", str(value))
    if not match:
        raise ParameterImportError(f"{label}: “{shorten(value)}” is not a size like 512x768.")
    return int(match[1]), int(match[2])


def load_json(text, what, *, constants=False):
    """Parsed JSON, or a ParameterImportError; `constants`: accept Infinity and NaN, as
    this studio's own chunk held them before it was made strict."""

    def refuse_constant(name):
        raise ValueError(f"{name} is not a number")

    try:
        return json.loads(text, parse_constant=float if constants else refuse_constant)
    except (ValueError, RecursionError) as error:
        detail = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise ParameterImportError(f"The {what} is not valid JSON ({detail}).") from error


def sampler_name_for(sampler, schedule_type, result):
    """Our sampler (an A1111 name in SAMPLERS) for a sampler and schedule type, or None;
    what cannot be matched goes into result.not_applied. `schedule_type`: None or "" for
    a name that says it all; "Automatic" is A1111's default for the sampler (Karras for
    DPM++ 2M), "Uniform" the model's own schedule, which our plain samplers run."""
    schedule = (schedule_type or "").strip()
    by_lower = {name.lower(): name for name in SAMPLERS}
    if schedule.lower() == "automatic":
        automatic = {name.lower(): value for name, value in A1111_AUTOMATIC_SCHEDULES.items()}
        schedule = automatic.get(sampler.strip().lower(), "")
    elif schedule.lower() == UNIFORM_SCHEDULE.lower():
        schedule = ""
    name = by_lower.get(sampler.strip().lower())
    if schedule:
        combined = by_lower.get(f"{sampler.strip()} {schedule}".lower())
        if combined:
            return combined
        if name and name.lower().endswith(" " + schedule.lower()):
            return name  # the old style: "DPM++ 2M Karras" with "Schedule type: Karras"
        if name:
            result.report("Schedule type", f"{schedule} (not available with {name})")
            return name
    if name:
        return name
    described = f"{sampler} ({schedule})" if schedule else sampler
    result.report("Sampler", f"{described} (not available here)")
    return None
