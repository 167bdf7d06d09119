"""IP-Adapter image prompts on a worker, as diffusers' IPAdapterMixin (SD, SDXL),
FluxIPAdapterMixin (FLUX.1) and SD3IPAdapterMixin (SD 3.x) apply them.

An adapter's weights (the image projection and the extra key/value projections of every
cross-attention layer, of every FLUX.1 double-stream block or of every SD 3.x joint
attention layer) and its image encoder (CLIP; SD 3.x: SigLIP) are loaded once per worker
and kept, like ControlNets. They are put into a pipeline's UNet or transformer only while a
batch that uses them runs (`ip_adapter_active`), then the model's own attention processors
come back: the next batch on the worker, with or without an adapter, never sees this one.

Three layouts: h94/IP-Adapter's (`image_proj.*`, `ip_adapter.*`: SD and SDXL),
InstantX/SD3.5-Large-IP-Adapter's (the same prefixes; a time-aware resampler, told apart by
its `image_proj.time_embedding.*`) and XLabs' FLUX.1 one (`ip_adapter_proj_model.*`,
`double_blocks.<n>.processor.ip_adapter_double_stream_k_proj/v_proj.*`), read into
diffusers' names as the mixins' load_ip_adapter read them.
"""

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection, IPAdapterTimeImageProjection
from safetensors import safe_open
from transformers import (
    CLIPImageProcessor,
    CLIPVisionModelWithProjection,
    SiglipImageProcessor,
    SiglipVisionModel,
)

from gpu_workers.requests import GenerationFailed

IMAGE_ENCODER_FOLDER = "image_encoder"
# The families each layout's adapters are made for, for messages.
SD_LAYOUT_FAMILIES = "Stable Diffusion or SDXL"
FLUX_LAYOUT_FAMILIES = "FLUX.1"
SD3_LAYOUT_FAMILIES = "Stable Diffusion 3.x"
# The tensor only InstantX's SD 3.x resampler has, in the state dict's image_proj part.
SD3_PROJECTION_TENSOR = "time_embedding.linear_1.weight"
# XLabs' FLUX.1 tensor name prefixes, and the part of diffusers' state dict each goes to.
XLABS_PARTS = {"ip_adapter_proj_model.": "image_proj", "double_blocks.": "ip_adapter"}


@dataclass
class LoadedIPAdapter:
    state_dict: dict  # {"image_proj": {...}, "ip_adapter": {...}}
    image_encoder: CLIPVisionModelWithProjection | SiglipVisionModel
    feature_extractor: CLIPImageProcessor | SiglipImageProcessor
    made_for: str  # SD_LAYOUT_FAMILIES, FLUX_LAYOUT_FAMILIES or SD3_LAYOUT_FAMILIES

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor it holds: the adapter's weights and the image encoder's."""
        weights = [tensor for part in self.state_dict.values() for tensor in part.values()]
        encoder = [*self.image_encoder.parameters(), *self.image_encoder.buffers()]
        return weights + encoder

    def to(self, device: torch.device) -> "LoadedIPAdapter":
        for part in self.state_dict.values():
            for name, tensor in part.items():
                part[name] = tensor.to(device)
        self.image_encoder.to(device)
        return self


def adapter_files(source: str) -> tuple[Path, Path]:
    """The adapter's weights file and image encoder folder for a library source: a
    `.safetensors` file, or a folder holding exactly one; the encoder in `image_encoder/`
    next to the weights."""
    path = Path(source)
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors"))
        if len(weights) != 1:
            raise GenerationFailed(
                f"The IP-Adapter folder {source} must hold exactly one .safetensors file "
                f"(it holds {len(weights)}); register the file itself instead."
            )
        path = weights[0]
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        raise GenerationFailed(
            f"The IP-Adapter {source} is not a .safetensors file or folder on this worker."
        )
    encoder = path.parent / IMAGE_ENCODER_FOLDER
    if not (encoder / "config.json").is_file():
        raise GenerationFailed(
            f"The IP-Adapter {path.name} has no CLIP image encoder (SD 3.x: SigLIP): put "
            "it (a transformers CLIPVisionModelWithProjection folder; SD 3.x: a "
            f"SiglipVisionModel folder with its preprocessor_config.json) at {encoder}."
        )
    return path, encoder


def read_ip_adapter(source: str, dtype: torch.dtype) -> LoadedIPAdapter:
    """The adapter of a library source, read into CPU memory (the model cache moves it to
    its device and keeps it: gpu_workers.pipelines.load_ip_adapter)."""
    weights, encoder_folder = adapter_files(source)
    state_dict = {"image_proj": {}, "ip_adapter": {}}
    made_for = SD_LAYOUT_FAMILIES
    try:
        with safe_open(weights, framework="pt", device="cpu") as opened:
            for name in opened.keys():
                part, rest = _diffusers_name(name)
                if part in state_dict:
                    state_dict[part][rest] = opened.get_tensor(name).to(dtype=dtype)
                    if name.startswith(tuple(XLABS_PARTS)):
                        made_for = FLUX_LAYOUT_FAMILIES
        if SD3_PROJECTION_TENSOR in state_dict["image_proj"]:
            made_for = SD3_LAYOUT_FAMILIES
            # What SD3IPAdapterMixin.load_ip_adapter reads from the encoder's folder.
            feature_extractor = SiglipImageProcessor.from_pretrained(encoder_folder)
            image_encoder = SiglipVisionModel.from_pretrained(encoder_folder, dtype=dtype)
        else:
            image_encoder = CLIPVisionModelWithProjection.from_pretrained(
                encoder_folder, dtype=dtype
            )
            size = image_encoder.config.image_size
            # What load_ip_adapter gives a pipeline that has no feature extractor of its own.
            feature_extractor = CLIPImageProcessor(size=size, crop_size=size)
    except (OSError, ValueError, RuntimeError) as error:
        raise GenerationFailed(f"The IP-Adapter {source} could not be read: {error}") from error
    if not state_dict["image_proj"] or not state_dict["ip_adapter"]:
        raise GenerationFailed(
            f"{weights.name} is not an IP-Adapter: it has neither image_proj.* and "
            "ip_adapter.* tensors (SD, SDXL, InstantX's SD 3.x) nor ip_adapter_proj_model.* "
            "and double_blocks.* ones (XLabs' FLUX.1)."
        )
    image_encoder.eval()
    return LoadedIPAdapter(state_dict, image_encoder, feature_extractor, made_for)


def _diffusers_name(name: str) -> tuple[str, str]:
    """A tensor's part of the state dict and its name there, as IPAdapterMixin and
    FluxIPAdapterMixin.load_ip_adapter split a .safetensors file."""
    for prefix, part in XLABS_PARTS.items():
        if name.startswith(prefix):
            rest = (
                name.removeprefix(prefix)
                .replace("ip_adapter_double_stream_k_proj", "to_k_ip")
                .replace("ip_adapter_double_stream_v_proj", "to_v_ip")
                .replace("processor.", "")
            )
            return part, rest
    part, _, rest = name.partition(".")
    return part, rest


@contextlib.contextmanager
def ip_adapter_active(model, adapter: LoadedIPAdapter, scale: float):
    """The UNet, FLUX.1 or SD 3.x transformer `model` with the adapter's attention
    processors and image projection, at `scale`; its own processors and projection come back
    after, whatever happens inside. An adapter of another layout is refused, naming both."""
    family = model_family(model)
    if adapter.made_for != family:
        raise GenerationFailed(
            f"This IP-Adapter is made for {adapter.made_for} models; this model is {family}. "
            f"Choose a {family} IP-Adapter."
        )
    if family == SD3_LAYOUT_FAMILIES:  # SD3Transformer2DLoadersMixin sets image_proj
        with _sd3_ip_adapter_active(model, adapter, scale) as projection:
            yield projection
        return
    processors = model.attn_processors
    projection = getattr(model, "encoder_hid_proj", None)  # a FLUX.1 transformer has none
    hid_dim_type = model.config.get("encoder_hid_dim_type")
    try:
        try:
            with _quiet_cast_warning():
                model._load_ip_adapter_weights([adapter.state_dict])
        except (KeyError, RuntimeError, ValueError) as error:
            raise GenerationFailed(
                "This IP-Adapter does not fit the model (is it made for another base model "
                f"family?): {str(error)[:200]}"
            ) from error
        for processor in model.attn_processors.values():
            if hasattr(processor, "scale") and isinstance(processor.scale, list):
                processor.scale = [scale] * len(processor.scale)
        yield model.encoder_hid_proj.image_projection_layers[0]
    finally:
        model.set_attn_processor(processors)
        model.encoder_hid_proj = projection
        model.config.encoder_hid_dim_type = hid_dim_type


def model_family(model) -> str:
    """The families of the adapters that fit the UNet or transformer `model`."""
    if isinstance(model, FluxTransformer2DModel):
        return FLUX_LAYOUT_FAMILIES
    if isinstance(model, SD3Transformer2DModel):
        return SD3_LAYOUT_FAMILIES
    return SD_LAYOUT_FAMILIES


@contextlib.contextmanager
def _sd3_ip_adapter_active(model: SD3Transformer2DModel, adapter: LoadedIPAdapter, scale: float):
    """ip_adapter_active for an SD 3.x transformer: SD3IPAdapterJointAttnProcessor2_0 in
    every joint attention layer at `scale` (a number, as set_ip_adapter_scale sets it), the
    resampler as `image_proj`."""
    processors = model.attn_processors
    had_projection = hasattr(model, "image_proj")
    projection = getattr(model, "image_proj", None)
    try:
        try:
            model._load_ip_adapter_weights(adapter.state_dict)
        except (KeyError, RuntimeError, ValueError) as error:
            raise GenerationFailed(
                "This IP-Adapter does not fit the model (is it made for another model size?): "
                f"{str(error)[:200]}"
            ) from error
        for processor in model.attn_processors.values():
            if isinstance(processor, SD3IPAdapterJointAttnProcessor2_0):
                processor.scale = scale
        yield model.image_proj
    finally:
        # First the resampler: its own attention layers count among the model's.
        if had_projection:
            model.image_proj = projection
        elif hasattr(model, "image_proj"):
            del model.image_proj
        model.set_attn_processor(processors)


@contextlib.contextmanager
def _quiet_cast_warning():
    """_load_ip_adapter_weights casts the UNet to the dtype it already has, which diffusers
    warns about at every call: once per batch, with nothing to act on."""
    modeling_logger = logging.getLogger("diffusers.models.modeling_utils")
    level = modeling_logger.level
    modeling_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        modeling_logger.setLevel(level)


def image_embeds(adapter: LoadedIPAdapter, images, projection, cfg_rows, device):
    """The UNet's `image_embeds` for a batch: each row's image encoded as the pipelines'
    encode_image does (negatives: zeros, or the encoding of a black image for adapters
    that read the encoder's hidden states), unconditional rows first, like the prompts.
    SD 3.x: one tensor, SigLIP's last-but-one hidden states (negatives: zeros), as
    StableDiffusion3Pipeline.prepare_ip_adapter_image_embeds makes it."""
    encoder = adapter.image_encoder
    pixels = adapter.feature_extractor(list(images), return_tensors="pt").pixel_values
    pixels = pixels.to(device=device, dtype=encoder.dtype)
    if isinstance(projection, IPAdapterTimeImageProjection):
        embeds = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        return torch.cat([torch.zeros_like(embeds)[cfg_rows], embeds]).to(device=device)
    if isinstance(projection, ImageProjection):
        embeds = encoder(pixels).image_embeds
        negative = torch.zeros_like(embeds)
    else:
        embeds = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    # One image per row and adapter: (rows, 1, ...), as prepare_ip_adapter_image_embeds.
    embeds, negative = embeds.unsqueeze(1), negative.unsqueeze(1)
    return [torch.cat([negative[cfg_rows], embeds]).to(device=device)]
