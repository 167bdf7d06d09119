"""This studio's JSON spec (gallery/services.py), completed by its A1111 infotext."""

import json
import math
from importlib import metadata

from generation.loras.embeddings.services import job_embeddings
from studio import __version__ as studio_version

from .a1111 import denoising_strength, parse_a1111_infotext
from .common import (
    HIRES_UPSCALER,
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

# Keys of the spec (gallery/services.py image_create_from_generation) that need no action:
# they describe how the image was made, and the form fields above already carry it.
# embeddings: named in the prompt, they apply again where the team has them.
STUDIO_INFORMATIONAL = {"job_id", "scheduler", "versions", "source_image_id", "embeddings"}
STUDIO_FIELDS = {
    "prompt": text_value,
    "negative_prompt": text_value,
    "template": text_value,  # the prompts as typed, before their variants and wildcards
    "negative_template": text_value,
    "steps": int_value,
    "guidance_scale": float_value,
    "width": int_value,
    "height": int_value,
    "seed": int_value,
    "clip_skip": int_value,
    "batch_size": int_value,
    "shift": float_value,  # FLUX.1 / SD 3.x; null: the model's default
}


def parse_studio_metadata(spec_text, parameters_text=None) -> ImportedParameters:
    """The studio's JSON spec, completed by its A1111 text for fields the spec lacks."""
    spec = (
        load_json(spec_text, "studio metadata", constants=True)
        if isinstance(spec_text, str)
        else spec_text
    )
    result = parse_studio_spec(spec)
    if parameters_text:
        try:
            infotext = parse_a1111_infotext(parameters_text)
        except ParameterImportError as error:
            result.report("A1111 parameters text", f"unreadable ({error})")
            return result
        for name, value in infotext.values.items():
            result.values.setdefault(name, value)
        result.model_name = result.model_name or infotext.model_name
        result.model_hash = result.model_hash or infotext.model_hash
        for name, short_hash in infotext.lora_hashes.items():
            result.lora_hashes.setdefault(name, short_hash)
        labels = result.reported_labels()
        for note in infotext.not_applied:
            if note.split(": ", 1)[0] not in labels:
                result.not_applied.append(note)
        result.version = result.version or infotext.version
    return result


def parse_studio_spec(spec) -> ImportedParameters:
    if not isinstance(spec, dict) or not isinstance(spec.get("prompt"), str):
        raise ParameterImportError("The studio metadata is malformed: it holds no prompt.")
    result = ImportedParameters(source="studio")
    picked_tags = []
    for key, value in spec.items():
        label = "CFG scale" if key == "guidance_scale" else key.replace("_", " ").capitalize()
        if key in STUDIO_FIELDS:
            if value is not None:
                result.values[key] = STUDIO_FIELDS[key](value, label)
        elif key == "sampler":
            if value:  # None: the model's default
                name = sampler_name_for(text_value(value, "Sampler"), None, result)
                if name:
                    result.values["sampler"] = name
            else:
                result.values["sampler"] = ""
        elif key == "model":
            name = value.get("name") if isinstance(value, dict) else value
            result.model_name = text_value(name, "Model name").strip()
            if isinstance(value, dict) and isinstance(value.get("sha256"), str):
                result.model_hash = value["sha256"]
        elif key == "mode":
            if value == "img2img":
                result.report(*SOURCE_IMAGE_NOTE)
            elif value not in (None, "txt2img"):
                result.report("Mode", f"{value} (imported as text to image)")
        elif key == "strength":
            if value is not None:
                result.values["strength"] = float_value(value, "Denoising strength")
        elif key == "hires":
            _studio_hires(value, result)
        elif key == "controlnet":
            _studio_controlnet(value, result)
        elif key == "ip_adapter":
            _studio_ip_adapter(value, result)
        elif key == "loras":
            picked_tags = _studio_lora_tags(value)
            result.lora_hashes.update(
                (lora["name"], lora.get("sha256") or "") for lora in value
            )
        elif key == "variation":
            _studio_variation(value, result)
        elif key == "versions":
            if isinstance(value, dict) and value.get("studio"):
                result.version = shorten(f"v{value['studio']}")
        elif key not in STUDIO_INFORMATIONAL and value not in (None, "", [], {}):
            result.report(label, _summary(value))
    if picked_tags and "prompt" in result.values:
        # LoRAs picked in the form come back as <lora:name:weight> tags in the prompt.
        result.values["prompt"] = " ".join([result.values["prompt"], *picked_tags])
    return result


def _studio_lora_tags(loras):
    """<lora:name:weight> tags for the LoRAs that were picked in the form; those written
    in the prompt are in the prompt already."""
    if not isinstance(loras, list):
        raise ParameterImportError("The studio metadata is malformed: its LoRAs are not a list.")
    tags = []
    for lora in loras:
        if not isinstance(lora, dict) or not isinstance(lora.get("name"), str):
            raise ParameterImportError("The studio metadata is malformed: a LoRA has no name.")
        if not lora.get("in_prompt"):
            weight = float_value(lora.get("weight", 1), f"LoRA {shorten(lora['name'])} weight")
            tags.append(f"<lora:{lora['name']}:{weight:g}>")
    return tags


def _studio_variation(variation, result):
    if not variation:
        return
    if not isinstance(variation, dict):
        raise ParameterImportError(
            "The studio metadata is malformed: its variation is not an object."
        )
    result.values["variation_strength"] = float_value(
        variation.get("strength"), "Variation seed strength"
    )
    if variation.get("seed") is not None:
        result.values["variation_seed"] = int_value(variation["seed"], "Variation seed")


def _studio_controlnet(control, result):
    """The ControlNet's weight and thresholds fill the form; its model and control image
    are for the user to choose again."""
    if not control:
        return
    if not isinstance(control, dict):
        raise ParameterImportError(
            "The studio metadata is malformed: its ControlNet is not an object."
        )
    if control.get("weight") is not None:
        result.values["control_scale"] = float_value(control["weight"], "ControlNet weight")
    for key in ("low_threshold", "high_threshold"):
        if control.get(key) is not None:
            result.values[f"control_{key}"] = int_value(control[key], f"ControlNet {key}")
    model = control.get("model")
    if model is None and control.get("module") == "none":  # the model read the image itself
        result.report("Control image", "not in the image: choose it again")
        return
    name = model.get("name") if isinstance(model, dict) else model
    result.report(
        "ControlNet",
        f"{name or 'a model'} (choose the ControlNet model and its control image)",
    )


def _studio_ip_adapter(ip_adapter, result):
    """The IP-Adapter's scale fills the form; its model and image prompt are for the user
    to choose again."""
    if not ip_adapter:
        return
    if not isinstance(ip_adapter, dict):
        raise ParameterImportError(
            "The studio metadata is malformed: its IP-Adapter is not an object."
        )
    if ip_adapter.get("scale") is not None:
        result.values["ip_adapter_scale"] = float_value(ip_adapter["scale"], "IP-Adapter scale")
    model = ip_adapter.get("model")
    name = model.get("name") if isinstance(model, dict) else model
    result.report(
        "IP-Adapter", f"{name or 'a model'} (choose the IP-Adapter model and its image prompt)"
    )


def _studio_hires(hires, result):
    result.values["hires_fix"] = bool(hires)
    if not hires:
        return
    if not isinstance(hires, dict):
        raise ParameterImportError("The studio metadata is malformed: its hires fix is not an "
                                   "object.")
    for key, value in hires.items():
        if key == "scale":
            result.values["hires_scale"] = float_value(value, "Hires upscale")
        elif key == "steps":
            result.values["hires_steps"] = int_value(value, "Hires steps")
        elif key == "strength":
            result.values["hires_strength"] = float_value(value, "Hires denoising strength")
        elif key == "upscaler":
            if str(value).lower() != HIRES_UPSCALER.lower():
                result.report("Hires upscaler", f"{value} ({HIRES_UPSCALER} is used here)")
        elif value not in (None, "", [], {}):
            result.report(f"Hires {key.replace('_', ' ')}", _summary(value))


def _summary(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


# -- Writing: a job's recipe as the studio's JSON spec ---------------------------------------


def recipe_spec(job, result):
    """The `studio` chunk of one image of `job` (a GenerationResult's): its recipe, with the
    library's names and hashes instead of ids, and what ran it (scheduler, versions)."""
    recipe = job.recipe()
    hires, control, adapter, variation = (
        recipe.hires, recipe.control, recipe.ip_adapter, recipe.variation
    )
    width, height = recipe.canvas_size()
    return {
        "job_id": job.pk,
        "mode": recipe.mode,
        "source_image_id": recipe.source and recipe.source.image,
        "variation": {"seed": result.variation_seed, "strength": variation.strength}
        if variation
        else None,
        "strength": float(denoising_strength(recipe)) if recipe.mode != "txt2img" else None,
        "outpaint": recipe.outpaint.model_dump() if recipe.outpaint else None,
        "clip_skip": recipe.clip_skip,
        "batch_size": recipe.batch_size,
        "hires": {
            "scale": hires.scale,
            "steps": hires.steps or recipe.steps,
            "strength": hires.strength,
            "upscaler": HIRES_UPSCALER,
        }
        if hires
        else None,
        "model": {
            "name": job.model.name,
            "source": job.model.source,
            "sha256": job.model.sha256 or None,
        },
        "controlnet": controlnet_spec(job, control) if control else None,
        "ip_adapter": {
            "model": {"name": job.ip_adapter_model.name, "source": job.ip_adapter_model.source},
            "image_id": adapter.image.image,
            "scale": adapter.scale,
        }
        if adapter
        else None,
        "embeddings": [
            {"name": used.name, "sha256": used.sha256} for used in job_embeddings(job)
        ],
        "loras": [
            {"name": used.name, "sha256": used.sha256, "weight": used.weight,
             "in_prompt": used.in_prompt}
            for used in job.job_loras.all()
        ],
        "prompt": recipe.prompt,
        "negative_prompt": recipe.negative_prompt,
        "template": recipe.template or None,
        "negative_template": recipe.negative_template or None,
        "steps": recipe.steps,
        "guidance_scale": recipe.guidance_scale,
        "width": width,
        "height": height,
        "seed": result.seed,
        "sampler": recipe.sampler or None,
        "shift": recipe.shift,
        "scheduler": {"class": result.scheduler_class, "config": result.scheduler_config},
        "versions": library_versions(),
    }


def controlnet_spec(job, control):
    """The ControlNet and its control image; a control image without a ControlNet model is
    read by the model itself (FLUX.1 Depth or Canny [dev]), as it is."""
    if control.model is None:
        return {"module": "none", "model": None, "image_id": control.image.image}
    return {
        "module": "canny",
        "model": {"name": job.control_model.name, "source": job.control_model.source},
        "image_id": control.image.image,
        "weight": control.scale,
        "low_threshold": control.low_threshold,
        "high_threshold": control.high_threshold,
    }


def library_versions():
    """What made the image, for reproducing it; read from package metadata (no torch import)."""
    versions = {"studio": studio_version}
    for package in ("diffusers", "torch", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def finite_json_value(value):
    """`value` with every infinite or NaN float as the string JSON.parse would need
    ("-Infinity", "Infinity", "NaN"): DPM++ schedulers' configs hold -inf
    (lambda_min_clipped), which JSON has no number for."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: finite_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json_value(item) for item in value]
    return value


def strict_json(spec):
    """JSON any strict parser reads (RFC 8259: no Infinity or NaN)."""
    return json.dumps(finite_json_value(spec), sort_keys=True, allow_nan=False)
