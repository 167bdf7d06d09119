"""Single-file checkpoints (`.safetensors`): Stable Diffusion in the A1111 / original LDM
layout, and the diffusion transformers FLUX.1 and SD 3.x as Black Forest Labs, Stability,
ComfyUI and diffusers write them.

Two jobs, both without loading a model:

- `checkpoint_architecture(path)` tells from the tensor names in the file's header which
  architecture a checkpoint has, so the worker and the library name it (or refuse a file
  that is no model) before diffusers builds anything; `flux_file_input_channels` and
  `folder_flux_input_channels` read a FLUX.1 transformer's input width, which tells a Fill
  model (inpaint and outpaint only) and a Depth or Canny [dev] one (txt2img with a control
  image only), so the library records it.
- `save_original_layout(pipe, path)` writes a diffusers SD 1.x or SDXL pipeline as one
  original-layout `.safetensors` file: the inverse of the conversion diffusers'
  `from_single_file` does. Tests and the offline demo use it to make a single-file
  checkpoint from the tiny models.

Pickled checkpoints (`.ckpt`, `.pt`, `.bin`) are never opened: unpickling runs code.
"""

import json
from pathlib import Path

from gpu_workers.safetensors_header import safetensors_header_read

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."  # SD 1.x: OpenAI CLIP ViT-L, transformers layout
# SDXL: CLIP ViT-L in transformers' layout, then OpenCLIP ViT-bigG in OpenCLIP's.
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# Tensor-name prefixes that identify an architecture, first match wins.
_ARCHITECTURE_MARKERS = [
    ("conditioner.embedders.1.", "sdxl"),  # SDXL base: CLIP ViT-L + OpenCLIP ViT-bigG
    ("conditioner.embedders.0.model.", "sdxl"),  # SDXL refiner: OpenCLIP ViT-bigG only
    ("cond_stage_model.model.", "sd2"),  # SD 2.x: OpenCLIP ViT-H
    (CLIP_PREFIX, "sd15"),
]


# Diffusion transformers, from the tensor names diffusers' single-file loader keys on
# (loaders/single_file_utils.py: CHECKPOINT_KEY_NAMES), each with or without ComfyUI's
# `model.diffusion_model.` prefix; Flux and SD3 transformer files often hold nothing else.
FLUX1 = "flux1"
SD3 = "sd3"
_TRANSFORMER_MARKERS = [
    # FLUX.2 shares FLUX.1's double blocks; its modulation is its own.
    ("single_stream_modulation.lin.weight", "flux2"),
    ("distilled_guidance_layer.in_proj.bias", "chroma"),  # Chroma too
    ("double_blocks.0.img_attn.norm.key_norm.scale", FLUX1),  # Black Forest Labs' layout
    ("single_transformer_blocks.0.proj_mlp.weight", FLUX1),  # diffusers' FluxTransformer2DModel
    ("joint_blocks.0.context_block.adaLN_modulation.1.bias", SD3),  # Stability's MMDiT
    ("transformer_blocks.0.norm1_context.linear.weight", SD3),  # diffusers' SD3Transformer2DModel
]
_ARCHITECTURE_NAMES = {
    FLUX1: "FLUX.1", SD3: "Stable Diffusion 3", "flux2": "FLUX.2", "chroma": "Chroma"
}
UNSUPPORTED_ARCHITECTURES = frozenset({"flux2", "chroma"})

# FLUX.1 Fill's transformer (FLUX.1-Fill-dev) reads 384 input channels: the packed latents,
# the masked source's latents and the mask (gpu_workers.flow.FLUX_FILL_CHANNELS, repeated
# here because web nodes read it without importing torch); it gives the latents' 64.
FLUX_FILL_CHANNELS = 384
# FLUX.1 Depth's and Canny's [dev] read 128: the packed latents and the control image's
# (gpu_workers.flow.FLUX_CONTROL_CHANNELS).
FLUX_CONTROL_CHANNELS = 128
FLUX_LATENT_CHANNELS = 64
# The transformer's input projection, [inner width, input channels]: Black Forest Labs'
# name and diffusers', each with or without ComfyUI's prefix.
_FLUX_INPUT_PROJECTIONS = ("img_in.weight", "x_embedder.weight")


class CheckpointError(ValueError):
    """The file is not a Stable Diffusion checkpoint this code can read; says why."""


def refuse_pickle(path: str | Path) -> None:
    suffix = Path(path).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{Path(path).name} is a pickle-based checkpoint ({suffix}); pickles are never "
            "loaded because opening one can run arbitrary code. Convert it to .safetensors."
        )


def tensor_names(path: str | Path) -> list[str]:
    """The tensor names in a `.safetensors` header; no tensor is read."""
    from safetensors import safe_open

    refuse_pickle(path)
    try:
        safetensors_header_read(path)  # capped before safetensors parses it
        with safe_open(str(path), framework="numpy") as opened:
            return list(opened.keys())
    except Exception as error:  # SafetensorError, OSError: the header is what is wrong
        raise CheckpointError(
            f"{Path(path).name} is not a valid .safetensors file ({error})."
        ) from error


def transformer_architecture(names) -> str | None:
    """FLUX1 or SD3 when `names` hold a diffusion transformer of that family, else None;
    refuses transformers of families the studio does not know."""
    present = {name.removeprefix(UNET_PREFIX) for name in names}
    for marker, architecture in _TRANSFORMER_MARKERS:
        if marker in present:
            if architecture in UNSUPPORTED_ARCHITECTURES:
                raise CheckpointError(
                    f"This is a {_ARCHITECTURE_NAMES[architecture]} checkpoint, a model family "
                    "the studio does not know."
                )
            return architecture
    return None


def architecture_name(architecture: str) -> str:
    return _ARCHITECTURE_NAMES.get(architecture, architecture.upper())


def checkpoint_architecture(path: str | Path) -> str:
    """"sd15", "sd2", "sdxl", FLUX1 or SD3 for a single-file checkpoint, from its tensor names
    only."""
    names = tensor_names(path)
    try:
        transformer = transformer_architecture(names)
    except CheckpointError as error:
        raise CheckpointError(f"{Path(path).name}: {error}") from error
    if transformer is not None:
        return transformer
    if not any(name.startswith(UNET_PREFIX) for name in names):
        raise CheckpointError(
            f"{Path(path).name} has neither {UNET_PREFIX}* tensors nor a FLUX.1 or SD 3 "
            "transformer, so it is not a full Stable Diffusion checkpoint (a LoRA, a VAE or "
            "an embedding, perhaps?)."
        )
    for prefix, architecture in _ARCHITECTURE_MARKERS:
        if any(name.startswith(prefix) for name in names):
            return architecture
    raise CheckpointError(
        f"{Path(path).name} has a UNet but no text encoder this worker recognises."
    )


def flux_input_channels(path: str | Path) -> int | None:
    """The input channels of the FLUX.1 transformer in a `.safetensors` file, from its
    input projection's shape in the header (no tensor is read); None without one."""
    try:
        header = safetensors_header_read(path)
    except (OSError, ValueError) as error:  # SafetensorsHeaderError is a ValueError
        raise CheckpointError(
            f"{Path(path).name} is not a valid .safetensors file ({error})."
        ) from error
    for name in _FLUX_INPUT_PROJECTIONS:
        for key in (name, UNET_PREFIX + name):
            entry = header.get(key)
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if isinstance(shape, list) and len(shape) == 2:
                return shape[1]
    return None


def flux_file_input_channels(path: str | Path) -> int | None:
    """The input channels of a single-file FLUX.1 checkpoint's transformer (64 for FLUX.1
    [dev], FLUX_FILL_CHANNELS for Fill, FLUX_CONTROL_CHANNELS for Depth and Canny); None
    for a checkpoint of another architecture. A file that is no checkpoint raises
    CheckpointError."""
    if checkpoint_architecture(path) != FLUX1:
        return None
    return flux_input_channels(path)


def folder_flux_input_channels(folder: str | Path) -> int | None:
    """The input channels of a diffusers folder's FLUX.1 transformer, from its
    transformer/config.json; None when there is none to read."""
    try:
        config = json.loads((Path(folder) / "transformer" / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("_class_name") != "FluxTransformer2DModel":
        return None
    return config.get("in_channels")


def flux_transformer_overrides(path: str | Path) -> dict:
    """What a single FLUX.1 transformer file's own shape changes in the config it loads
    with: a Fill transformer loaded with FLUX.1 [dev]'s configs (as users have them) takes
    384 channels in and gives 64, as FLUX.1-Fill-dev's config says, a Depth or Canny one 128
    in and 64 out, as FLUX.1-Depth-dev's and FLUX.1-Canny-dev's say; others keep theirs."""
    channels = flux_input_channels(path)
    if channels in (FLUX_FILL_CHANNELS, FLUX_CONTROL_CHANNELS):
        return {"in_channels": channels, "out_channels": FLUX_LATENT_CHANNELS}
    return {}


# --- diffusers → original layout --------------------------------------------------------

# Module names that differ inside a UNet resnet block (diffusers → LDM).
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",  # SDXL's sizes and pooled prompt
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_TOP = {"conv_norm_out": "norm_out"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _split(key: str, depth: int) -> tuple[list[str], str]:
    parts = key.split(".")
    return parts[:depth], ".".join(parts[depth:])


def _rename_head(rest: str, table: dict[str, str]) -> str:
    """Replace the longest module name in `table` that starts `rest`."""
    for old in sorted(table, key=len, reverse=True):
        if rest == old or rest.startswith(old + "."):
            return table[old] + rest[len(old) :]
    return rest


def unet_to_original(state_dict: dict, layers_per_block: int) -> dict:
    """A diffusers UNet2DConditionModel state dict in LDM's `model.diffusion_model.` names."""
    per_level = layers_per_block + 1  # resnets (+ attentions), then a down/upsampler
    out = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "down_blocks":
            level, part, index, rest = int(parts[1]), parts[2], parts[3], ".".join(parts[4:])
            if part == "downsamplers":
                name = f"input_blocks.{level * per_level + per_level}.0.op.{rest[len('conv.'):]}"
            else:
                block = level * per_level + int(index) + 1
                if part == "resnets":
                    name = f"input_blocks.{block}.0.{_rename_head(rest, _UNET_RESNET)}"
                else:
                    name = f"input_blocks.{block}.1.{rest}"
        elif parts[0] == "up_blocks":
            level, part, index, rest = int(parts[1]), parts[2], parts[3], ".".join(parts[4:])
            if part == "upsamplers":
                block = level * per_level + layers_per_block
                has_attention = any(
                    k.startswith(f"up_blocks.{level}.attentions.") for k in state_dict
                )
                name = f"output_blocks.{block}.{2 if has_attention else 1}.{rest}"
            else:
                block = level * per_level + int(index)
                if part == "resnets":
                    name = f"output_blocks.{block}.0.{_rename_head(rest, _UNET_RESNET)}"
                else:
                    name = f"output_blocks.{block}.1.{rest}"
        elif parts[0] == "mid_block":
            part, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if part == "resnets":
                name = f"middle_block.{2 * index}.{_rename_head(rest, _UNET_RESNET)}"
            else:
                name = f"middle_block.{2 * index + 1}.{rest}"
        else:
            name = _rename_head(key, _UNET_TOP)
        out[UNET_PREFIX + name] = tensor
    return out


def vae_to_original(state_dict: dict, num_blocks: int) -> dict:
    """A diffusers AutoencoderKL state dict in LDM's `first_stage_model.` names."""
    out = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        coder = parts[0]
        if coder not in ("encoder", "decoder"):  # quant_conv, post_quant_conv
            out[VAE_PREFIX + key] = tensor
            continue
        part = parts[1]
        if part in ("down_blocks", "up_blocks"):
            level = int(parts[2])
            ldm_level = level if part == "down_blocks" else num_blocks - 1 - level
            ldm_part = "down" if part == "down_blocks" else "up"
            kind, rest = parts[3], ".".join(parts[5:])
            if kind == "resnets":
                rest = rest.replace("conv_shortcut", "nin_shortcut")
                name = f"{coder}.{ldm_part}.{ldm_level}.block.{parts[4]}.{rest}"
            else:  # downsamplers.0 / upsamplers.0
                sampler = "downsample" if kind == "downsamplers" else "upsample"
                name = f"{coder}.{ldm_part}.{ldm_level}.{sampler}.{rest}"
        elif part == "mid_block":
            kind, index, rest = parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                rest = rest.replace("conv_shortcut", "nin_shortcut")
                name = f"{coder}.mid.block_{index + 1}.{rest}"
            else:
                name = f"{coder}.mid.attn_1.{_rename_head(rest, _VAE_ATTENTION)}"
                if tensor.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                    tensor = tensor[:, :, None, None]
        else:
            name = f"{coder}.{_rename_head('.'.join(parts[1:]), _VAE_TOP)}"
        out[VAE_PREFIX + name] = tensor
    return out


def clip_to_original(state_dict: dict, prefix: str = CLIP_PREFIX) -> dict:
    """A transformers CLIPTextModel state dict in LDM's `cond_stage_model.transformer.` names
    (or under another `prefix`).

    transformers 5.6 dropped the `text_model.` level from CLIPTextModel; checkpoints keep it.
    """
    return {
        prefix + (key if key.startswith("text_model.") else "text_model." + key): value
        for key, value in state_dict.items()
    }


# Inside one transformer layer of a CLIP text model (transformers → OpenCLIP).
_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def open_clip_to_original(state_dict: dict, prefix: str = SDXL_OPEN_CLIP_PREFIX) -> dict:
    """A transformers CLIPTextModelWithProjection state dict in OpenCLIP's names, as SDXL
    checkpoints hold ViT-bigG: q, k and v fused into one in_proj, the projection transposed."""
    import torch  # here: web nodes import this module and have no torch

    state_dict = {key.removeprefix("text_model."): value for key, value in state_dict.items()}
    out = {
        "token_embedding.weight": state_dict.pop("embeddings.token_embedding.weight"),
        "positional_embedding": state_dict.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": state_dict.pop("final_layer_norm.weight"),
        "ln_final.bias": state_dict.pop("final_layer_norm.bias"),
        "text_projection": state_dict.pop("text_projection.weight").T,
    }
    state_dict.pop("embeddings.position_ids", None)
    layers = {int(key.split(".")[2]) for key in state_dict if key.startswith("encoder.layers.")}
    for index in sorted(layers):
        layer = f"encoder.layers.{index}."
        block = f"transformer.resblocks.{index}."
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(
                [state_dict.pop(f"{layer}self_attn.{name}_proj.{kind}") for name in "qkv"]
            )
        for key in [key for key in state_dict if key.startswith(layer)]:
            out[block + _rename_head(key[len(layer) :], _OPEN_CLIP_LAYER)] = state_dict.pop(key)
    if state_dict:
        raise ValueError(f"Tensors with no OpenCLIP name: {sorted(state_dict)}")
    return {prefix + key: value for key, value in out.items()}


def save_original_layout(pipe, path: str | Path) -> Path:
    """Write an SD 1.x diffusers pipeline (UNet, VAE, CLIP text encoder) or an SDXL one (two
    text encoders) as one original-layout `.safetensors` checkpoint, the kind A1111 and
    civitai share."""
    from safetensors.torch import save_file

    path = Path(path)
    unet_config, vae_config = pipe.unet.config, pipe.vae.config
    if getattr(pipe, "text_encoder_2", None) is not None:
        text_encoders = {
            **clip_to_original(pipe.text_encoder.state_dict(), SDXL_CLIP_PREFIX),
            **open_clip_to_original(pipe.text_encoder_2.state_dict()),
        }
    else:
        text_encoders = clip_to_original(pipe.text_encoder.state_dict())
    tensors = {
        **unet_to_original(pipe.unet.state_dict(), unet_config.layers_per_block),
        **vae_to_original(pipe.vae.state_dict(), len(vae_config.down_block_types)),
        **text_encoders,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Contiguous copies: safetensors refuses views and shared storage.
    save_file({key: value.contiguous().clone() for key, value in tensors.items()}, str(path))
    return path
