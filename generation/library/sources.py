"""Checks that a model library entry points at something a worker can load.

Local paths are checked on this machine, which sees the model storage as the workers do.
Nothing is loaded: a diffusers folder is recognised by its config files, a single-file
checkpoint by its `.safetensors` header (`safetensors.safe_open`, no tensor is read). Pickled
checkpoints are refused by name, never opened.
"""

import json
import re
from pathlib import Path

from django.core.exceptions import ValidationError
from huggingface_hub import try_to_load_from_cache

from generation.models import FluxTransformer, ModelFamily, ModelKind, SourceKind
from gpu_workers.checkpoints import (
    FLUX_CONTROL_CHANNELS,
    FLUX_FILL_CHANNELS,
    PICKLE_SUFFIXES,
    CheckpointError,
    checkpoint_architecture,
    flux_file_input_channels,
    folder_flux_input_channels,
    tensor_names,
)

# Hugging Face repo ids: owner/name, letters, digits, "-", "_", "."; at most 96 characters
# each; no "--" or ".."; neither starts nor ends with "-" or ".".
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
HUB_ID = re.compile(rf"^{_HUB_PART}/{_HUB_PART}$")
HUB_EXAMPLE = "runwayml/stable-diffusion-v1-5"

_XL_HINT = "XL"  # every SDXL pipeline class name has it: StableDiffusionXLPipeline, ...
# FluxPipeline, FluxImg2ImgPipeline, ...; StableDiffusion3Pipeline, StableDiffusion3Img2Img...
_FLUX_PREFIX = "Flux"
_SD3_PREFIX = "StableDiffusion3"
_A_MODEL_OF = {
    ModelFamily.SDXL: "an SDXL", ModelFamily.FLUX1: "a FLUX.1", ModelFamily.SD3: "an SD 3.x"
}


def validate_hub_id(value):
    value = value.strip()
    if value.startswith(("http://", "https://", "huggingface.co/", "hf.co/")):
        raise ValidationError(
            f"Write the Hub id as owner/name (e.g. {HUB_EXAMPLE}), not a web address."
        )
    if not HUB_ID.match(value) or "--" in value or ".." in value:
        raise ValidationError(
            f"“{value}” is not a Hub id: write it as owner/name, e.g. {HUB_EXAMPLE}."
        )
    return value


def _local_path(value, what):
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        raise ValidationError(
            f"Write the {what}'s full path (starting with /): workers and web nodes run in "
            "different folders."
        )
    return path


def _pipeline_class(folder):
    """`_class_name` from a diffusers folder's model_index.json, or a ValidationError."""
    try:
        return json.loads((folder / "model_index.json").read_text(encoding="utf-8"))[
            "_class_name"
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValidationError(
            f"{folder}/model_index.json is not a readable diffusers model index ({error})."
        ) from error


def validate_folder(value, kind, family=None):
    """A diffusers folder for `kind`; returns the normalised path. For checkpoints, also
    checks that the pipeline's class agrees with `family`."""
    folder = _local_path(value, "folder")
    if folder.is_file():
        raise ValidationError(
            f"{folder} is a file, not a folder: choose “{SourceKind.FILE.label}” as the "
            "source type."
        )
    if not folder.is_dir():
        raise ValidationError(
            f"There is no folder at {folder}. The path must exist on this server, as the "
            "workers see it."
        )
    if kind == ModelKind.CHECKPOINT:
        if not (folder / "model_index.json").is_file():
            raise ValidationError(
                f"{folder} has no model_index.json, so it is not a diffusers pipeline folder."
            )
        _check_family(_pipeline_class(folder), family)
    elif kind == ModelKind.CONTROLNET:
        if not ((folder / "config.json").is_file() or (folder / "model_index.json").is_file()):
            raise ValidationError(
                f"{folder} has no config.json, so it is not a diffusers ControlNet folder."
            )
    else:
        weights = sorted(folder.glob("*.safetensors"))
        if len(weights) != 1:
            raise ValidationError(
                f"{folder} holds {len(weights)} .safetensors files; an IP-Adapter folder holds "
                "exactly one (register the file itself to choose one)."
            )
        validate_ip_adapter_file(weights[0], family)
    return str(folder)


# The IP-Adapter layouts the workers read (gpu_workers.ip_adapters): their tensor name
# prefixes, where they come from, and the families their adapters are made for.
_IP_ADAPTER_LAYOUTS = {
    "h94": (
        ("image_proj.", "ip_adapter."),
        "diffusers' IP-Adapter layout, as h94/IP-Adapter's .safetensors files have",
        (ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL),
    ),
    "instantx": (
        ("image_proj.", "ip_adapter."),
        "InstantX's SD 3.x IP-Adapter layout, as InstantX/SD3.5-Large-IP-Adapter's file has",
        (ModelFamily.SD3,),
    ),
    "xlabs": (
        ("ip_adapter_proj_model.", "double_blocks."),
        "XLabs' FLUX.1 IP-Adapter layout, as XLabs-AI/flux-ip-adapter's file has",
        (ModelFamily.FLUX1,),
    ),
}
# The tensor only InstantX's SD 3.x resampler has (gpu_workers.ip_adapters.
# SD3_PROJECTION_TENSOR, under its file's image_proj. prefix).
_INSTANTX_TENSOR = "image_proj.time_embedding.linear_1.weight"


def validate_ip_adapter_file(path, family=None):
    """An IP-Adapter as the workers load it (gpu_workers.ip_adapters): h94's `image_proj.*`
    and `ip_adapter.*` tensors (SD, SDXL), InstantX's (the same prefixes, a time-aware
    resampler: SD 3.x) or XLabs' `ip_adapter_proj_model.*` and `double_blocks.*` ones
    (FLUX.1), made for `family` if given, and its image encoder in `image_encoder/` next to
    it (CLIP; SD 3.x: SigLIP, with its image processor's preprocessor_config.json)."""
    try:
        names = tensor_names(path)
    except CheckpointError as error:
        raise ValidationError(str(error)) from error
    xlabs_prefixes = _IP_ADAPTER_LAYOUTS["xlabs"][0]
    layout = "h94"
    if any(name.startswith(xlabs_prefixes) for name in names):
        layout = "xlabs"
    elif _INSTANTX_TENSOR in names:
        layout = "instantx"
    prefixes, described, families = _IP_ADAPTER_LAYOUTS[layout]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise ValidationError(
                f"{path.name} is not an IP-Adapter: it has no {prefix}* tensors ({described})."
            )
    if family and family not in families:
        labels = " or ".join(ModelFamily(made_for).label for made_for in families)
        raise ValidationError(
            f"{path.name} is an IP-Adapter for {labels} models ({described}): set the family "
            f"to {labels}.",
            code="family",
        )
    encoder = path.parent / "image_encoder"
    if layout == "instantx":
        needed = ("config.json", "preprocessor_config.json")
        if not all((encoder / name).is_file() for name in needed):
            raise ValidationError(
                f"{path.name} needs its SigLIP image encoder next to it: put the "
                "image_encoder folder (config.json, preprocessor_config.json and weights) "
                f"at {encoder}."
            )
    elif not (encoder / "config.json").is_file():
        raise ValidationError(
            f"{path.name} needs its CLIP image encoder next to it: put the image_encoder "
            f"folder (config.json and weights) at {encoder}."
        )


def folder_family(class_name):
    """The family a diffusers pipeline class belongs to; None for SD 1.x and 2.x, which share
    their classes, so a folder does not tell them apart."""
    if class_name.startswith(_FLUX_PREFIX):
        return ModelFamily.FLUX1
    if class_name.startswith(_SD3_PREFIX):
        return ModelFamily.SD3
    if _XL_HINT in class_name:
        return ModelFamily.SDXL
    return None


def _check_family(class_name, family):
    if family is None:
        return
    detected = folder_family(class_name)
    if detected is not None and family != detected:
        raise ValidationError(
            f"This is {_A_MODEL_OF[detected]} model ({class_name}): set the family to "
            f"“{detected.label}”.",
            code="family",
        )
    if detected is None and family not in (ModelFamily.SD15, ModelFamily.SD2):
        raise ValidationError(
            f"This is not {_A_MODEL_OF[family]} model ({class_name}): set the family to SD "
            "1.x or 2.x.",
            code="family",
        )


def validate_single_file(value, kind, family=None):
    """A `.safetensors` file whose header is valid; returns the normalised path. A
    checkpoint's architecture, read from its tensor names, must agree with `family`."""
    path = _local_path(value, "file")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ValidationError(
            f"{path.name} is a pickle-based checkpoint ({suffix}). The studio never loads "
            "pickles, because opening one can run any code: convert it to .safetensors "
            "first."
        )
    if suffix != ".safetensors":
        raise ValidationError(f"{path.name} is not a .safetensors file.")
    if path.is_dir():
        raise ValidationError(
            f"{path} is a folder: choose “{SourceKind.FOLDER.label}” as the source type."
        )
    if not path.is_file():
        raise ValidationError(
            f"There is no file at {path}. The path must exist on this server, as the workers "
            "see it."
        )
    try:
        if not tensor_names(path):
            raise ValidationError(f"{path.name} holds no tensors.")
        if kind == ModelKind.CHECKPOINT:
            architecture = checkpoint_architecture(path)
    except CheckpointError as error:
        raise ValidationError(str(error)) from error
    if kind == ModelKind.IP_ADAPTER:
        validate_ip_adapter_file(path, family)
    if kind == ModelKind.CHECKPOINT and family is not None and architecture != family:
        raise ValidationError(
            f"{path.name} is a {ModelFamily(architecture).label} checkpoint: set the family "
            f"to “{ModelFamily(architecture).label}”.",
            code="family",
        )
    return str(path)


def validate_source(value, *, source_kind, kind, family=None):
    """The normalised source, or a ValidationError that says what is wrong and what to do."""
    if source_kind == SourceKind.HUB:
        if kind == ModelKind.IP_ADAPTER:
            raise ValidationError(
                "IP-Adapters are registered as a local .safetensors file (or a folder holding "
                "one) with its image_encoder folder next to it, e.g. h94/IP-Adapter's "
                "models/ip-adapter_sd15.safetensors once downloaded."
            )
        return validate_hub_id(value)
    if source_kind == SourceKind.FOLDER:
        return validate_folder(value, kind, family)
    return validate_single_file(value, kind, family)


def validate_config_source(value):
    """A single-file checkpoint's component configs: a Hub id or a local diffusers folder."""
    value = value.strip()
    if not value.startswith(("/", "~")):
        return validate_hub_id(value)
    folder = _local_path(value, "folder")
    if not (folder / "model_index.json").is_file():
        raise ValidationError(
            f"{folder} is not a diffusers folder (no model_index.json there)."
        )
    return str(folder)


# A FLUX.1 transformer's input width → what it reads beside its latents.
FLUX_TRANSFORMERS = {
    FLUX_FILL_CHANNELS: FluxTransformer.FILL,
    FLUX_CONTROL_CHANNELS: FluxTransformer.CONTROL,
}


def flux_transformer(source, *, source_kind):
    """What a checkpoint source's FLUX.1 transformer reads beside its latents (a
    FluxTransformer): a Fill model's source and mask, a Depth or Canny model's control
    image, or nothing more (a standard model, and any source that isn't FLUX.1)."""
    channels = _flux_input_channels(source, source_kind)
    return FLUX_TRANSFORMERS.get(channels, FluxTransformer.STANDARD)


def _flux_input_channels(source, source_kind):
    """The input width of the source's FLUX.1 transformer: from a single file's header, a
    folder's transformer/config.json or, for a Hub id, the config in this machine's Hugging
    Face cache (nothing is downloaded; one not there is not known here, and the workers
    refuse the modes the model can't run). None for what can't be read, so that a row
    saved before sources were checked never stops a migration."""
    if source_kind == SourceKind.FILE:
        try:
            return flux_file_input_channels(source)
        except (CheckpointError, OSError):
            return None
    if source_kind == SourceKind.FOLDER:
        return folder_flux_input_channels(source)
    try:
        cached = try_to_load_from_cache(source, "transformer/config.json")
    except ValueError:  # huggingface_hub's HFValidationError: no Hub id
        return None
    if not isinstance(cached, str):
        return None
    return folder_flux_input_channels(Path(cached).parent.parent)
