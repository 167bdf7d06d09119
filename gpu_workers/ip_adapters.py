"""IP-Adapter image prompts on a worker, as diffusers' IPAdapterMixin (SD, SDXL) and
FluxIPAdapterMixin (FLUX.1) apply them.

An adapter's weights (the image projection and the extra key/value projections of every
cross-attention layer, or of every FLUX.1 double-stream block) and its CLIP image encoder
are loaded once per worker and kept, like ControlNets. They are put into a pipeline's UNet
or transformer only while a batch that uses them runs (`ip_adapter_active`), then the
model's own attention processors come back: the next batch on the worker, with or without
an adapter, never sees this one.

Two layouts: h94/IP-Adapter's (`image_proj.*`, `ip_adapter.*`: SD and SDXL) and XLabs'
FLUX.1 one (`ip_adapter_proj_model.*`, `double_blocks.<n>.processor.
ip_adapter_double_stream_k_proj/v_proj.*`), read into diffusers' names as
FluxIPAdapterMixin.load_ip_adapter reads them.
"""

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel
from diffusers.models.embeddings import ImageProjection
from safetensors import safe_open
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from gpu_workers.requests import GenerationFailed

IMAGE_ENCODER_FOLDER = "image_encoder"
# The families each layout's adapters are made for, for messages.
SD_LAYOUT_FAMILIES = "Stable Diffusion or SDXL"
FLUX_LAYOUT_FAMILIES = "FLUX.1"
# XLabs' FLUX.1 tensor name prefixes, and the part of diffusers' state dict each goes to.
XLABS_PARTS = {"ip_adapter_proj_model.": "image_proj", "double_blocks.": "ip_adapter"}


@dataclass
class LoadedIPAdapter:
    state_dict: dict  # {"image_proj": {...}, "ip_adapter": {...}}
    image_encoder: CLIPVisionModelWithProjection
    feature_extractor: CLIPImageProcessor
    made_for: str  # SD_LAYOUT_FAMILIES or FLUX_LAYOUT_FAMILIES

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
            f"The IP-Adapter {path.name} has no CLIP image encoder: put it (a transformers "
            f"CLIPVisionModelWithProjection folder) at {encoder}."
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
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(encoder_folder, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as error:
        raise GenerationFailed(f"The IP-Adapter {source} could not be read: {error}") from error
    if not state_dict["image_proj"] or not state_dict["ip_adapter"]:
        raise GenerationFailed(
            f"{weights.name} is not an IP-Adapter: it has neither image_proj.* and "
            "ip_adapter.* tensors (SD, SDXL) nor ip_adapter_proj_model.* and double_blocks.* "
            "ones (XLabs' FLUX.1)."
        )
    image_encoder.eval()
    size = image_encoder.config.image_size
    # What load_ip_adapter gives a pipeline that has no feature extractor of its own.
    feature_extractor = CLIPImageProcessor(size=size, crop_size=size)
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
    """The UNet or FLUX.1 transformer `model` with the adapter's attention processors and
    image projection, at `scale`; its own processors and projection come back after,
    whatever happens inside. An adapter of the other layout is refused, naming both."""
    family = (
        FLUX_LAYOUT_FAMILIES if isinstance(model, FluxTransformer2DModel) else SD_LAYOUT_FAMILIES
    )
    if adapter.made_for != family:
        raise GenerationFailed(
            f"This IP-Adapter is made for {adapter.made_for} models; this model is {family}. "
            f"Choose a {family} IP-Adapter."
        )
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
    that read the encoder's hidden states), unconditional rows first, like the prompts."""
    encoder = adapter.image_encoder
    pixels = adapter.feature_extractor(list(images), return_tensors="pt").pixel_values
    pixels = pixels.to(device=device, dtype=encoder.dtype)
    if isinstance(projection, ImageProjection):
        embeds = encoder(pixels).image_embeds
        negative = torch.zeros_like(embeds)
    else:
        embeds = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    # One image per row and adapter: (rows, 1, ...), as prepare_ip_adapter_image_embeds.
    embeds, negative = embeds.unsqueeze(1), negative.unsqueeze(1)
    return [torch.cat([negative[cfg_rows], embeds]).to(device=device)]
