"""LoRA files for tests, built from numpy arrays in the layouts real tools write: kohya
(`lora_unet_…_lora_down.weight`, `ss_*` metadata) and diffusers/peft (`unet.….lora_A.weight`).
Shapes follow the real architectures (SD 1.x cross-attention 768, SD 2.x 1024, SDXL 2048)
on a couple of layers, so the files stay a few kilobytes.

FLUX.1 and SD 3.x LoRAs (`flux_*_lora_bytes`, `sd3_*_lora_bytes`) have the real models'
widths by default, or with `tiny=True` those of gpu_workers.tiny_models' FLUX.1 and SD3
pipelines, so that diffusers loads them there."""

import json
import pickle
import struct

import numpy as np
from safetensors.numpy import save

CROSS_DIM = {"sd15": 768, "sd2": 1024, "sdxl": 2048}
TEXT_DIM = {"sd15": 768, "sd2": 1024}


def _pair(rank, in_features, out_features, seed):
    rng = np.random.default_rng(seed)
    down = rng.standard_normal((rank, in_features)).astype(np.float16)
    up = rng.standard_normal((out_features, rank)).astype(np.float16)
    return down, up


def kohya_lora_bytes(family="sd15", *, rank=8, metadata=None, seed=0, text_encoder=True):
    tensors = {}
    unet = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0"
    for n, (module, in_features) in enumerate(
        [("attn2_to_k", CROSS_DIM[family]), ("attn2_to_v", CROSS_DIM[family]), ("attn1_to_q", 320)]
    ):
        down, up = _pair(rank, in_features, 320, seed + n)
        tensors[f"{unet}_{module}.lora_down.weight"] = down
        tensors[f"{unet}_{module}.lora_up.weight"] = up
        tensors[f"{unet}_{module}.alpha"] = np.array(rank / 2, dtype=np.float16)
    if text_encoder:
        encoders = (
            [("lora_te1", 768), ("lora_te2", 1280)] if family == "sdxl"
            else [("lora_te", TEXT_DIM[family])]
        )
        for prefix, width in encoders:
            name = f"{prefix}_text_model_encoder_layers_0_self_attn_q_proj"
            down, up = _pair(rank, width, width, seed + 10)
            tensors[f"{name}.lora_down.weight"] = down
            tensors[f"{name}.lora_up.weight"] = up
    return save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})


def kohya_metadata(family="sd15", **extra):
    versions = {"sd15": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}
    models = {"sd15": "v1-5-pruned-emaonly.safetensors", "sd2": "v2-1_768-ema-pruned.safetensors",
              "sdxl": "sd_xl_base_1.0.safetensors"}
    return {
        "ss_base_model_version": versions[family],
        "ss_sd_model_name": models[family],
        "ss_network_module": "networks.lora",
        "ss_network_dim": "8",
        "ss_network_alpha": "4.0",
        "ss_resolution": "(512, 512)" if family != "sdxl" else "(1024, 1024)",
        "ss_output_name": "watercolor_style",
        "ss_tag_frequency": json.dumps(
            {
                "10_watercolor": {"watercolor": 40, "painting": 12, "1girl": 3},
                "5_ink": {"ink wash": 20, "painting": 10, "watercolor": 5},
            }
        ),
        **extra,
    }


def peft_lora_bytes(family="sd15", *, rank=4, seed=0, metadata=None):
    tensors = {}
    block = "unet.down_blocks.1.attentions.0.transformer_blocks.0"
    for n, (module, in_features) in enumerate(
        [("attn2.to_k", CROSS_DIM[family]), ("attn2.to_v", CROSS_DIM[family]), ("attn1.to_q", 640)]
    ):
        down, up = _pair(rank, in_features, 640, seed + n)
        tensors[f"{block}.{module}.lora_A.weight"] = down
        tensors[f"{block}.{module}.lora_B.weight"] = up
    if family == "sdxl":
        down, up = _pair(rank, 1280, 1280, seed + 9)
        tensors["text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = down
        tensors["text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = up
    return save(tensors, metadata=metadata or {"format": "pt"})


# Transformer width (heads × head width), its single blocks' MLP width, CLIP-L's width.
FLUX_WIDTHS = {"real": (3072, 12288, 768), "tiny": (32, 128, 32)}
# Transformer width and the two CLIPs' widths: SD 3 Medium's (SD 3.5 Large: 2432) or the
# tiny SD3's.
SD3_WIDTHS = {"real": (1536, 768, 1280), "tiny": (32, 32, 48)}


def _size(tiny):
    return "tiny" if tiny else "real"


def flux_kohya_lora_bytes(
    *, tiny=False, rank=4, seed=0, text_encoder=True, comfyui=False, metadata=None
):
    """A FLUX.1 LoRA as kohya's sd-scripts saves it: the double blocks' attention with q, k
    and v fused in one `qkv` layer (up: 3 × width rows), a single block's output layer, and
    CLIP-L's attention (`lora_te1_`); an alpha per layer. With `comfyui`, the same layers
    under ComfyUI's names (`diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight`,
    `text_encoders.clip_l.transformer.…`), as LoRAs trained in ComfyUI or Forge are."""
    width, mlp_width, clip_width = FLUX_WIDTHS[_size(tiny)]
    transformer_prefix, clip_prefix = (
        ("diffusion_model.", "text_encoders.clip_l.transformer.")
        if comfyui
        else ("lora_unet_", "lora_te1_")
    )
    layers = [
        (transformer_prefix, "double_blocks.0.img_attn.qkv", width, 3 * width),
        (transformer_prefix, "double_blocks.0.txt_attn.qkv", width, 3 * width),
        (transformer_prefix, "double_blocks.0.img_attn.proj", width, width),
        (transformer_prefix, "double_blocks.0.img_mlp.0", width, mlp_width),
        (transformer_prefix, "single_blocks.0.linear2", width + mlp_width, width),
    ]
    if not tiny:
        # q, k, v and the MLP's input fused; diffusers splits it at FLUX.1's real widths only.
        layers.append((transformer_prefix, "single_blocks.0.linear1", width, 3 * width + mlp_width))
    if text_encoder:
        # Trainers write every attention projection (diffusers recognises kohya's text
        # encoder layers by their out_proj).
        layers += [
            (clip_prefix, f"text_model.encoder.layers.0.self_attn.{module}", clip_width,
             clip_width)
            for module in ("q_proj", "out_proj")
        ]
    tensors = {}
    for n, (prefix, module, in_features, out_features) in enumerate(layers):
        name = prefix + (module if comfyui else module.replace(".", "_"))
        down, up = _pair(rank, in_features, out_features, seed + n)
        tensors[f"{name}.lora_down.weight"] = down
        tensors[f"{name}.lora_up.weight"] = up
        tensors[f"{name}.alpha"] = np.array(rank, dtype=np.float16)
    return save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})


def flux_peft_lora_bytes(*, tiny=False, rank=4, seed=0, single_blocks=True, metadata=None):
    """A FLUX.1 LoRA as ai-toolkit and diffusers save it (peft names under `transformer.`):
    a double block's image and text attention and, with `single_blocks`, a single block's
    attention and output layer (only FLUX.1 has those)."""
    width, mlp_width, _ = FLUX_WIDTHS[_size(tiny)]
    block = "transformer.transformer_blocks.0.attn"
    layers = [(f"{block}.{module}", width, width)
              for module in ("to_q", "to_k", "to_v", "add_q_proj", "add_v_proj")]
    if single_blocks:
        single = "transformer.single_transformer_blocks.0"
        layers += [(f"{single}.attn.to_q", width, width),
                   (f"{single}.proj_out", width + mlp_width, width)]
    return _peft_bytes(layers, rank, seed, metadata)


def flux_xlabs_lora_bytes(*, tiny=False, rank=4, seed=0):
    """A FLUX.1 LoRA as XLabs' trainer saves it: a double block's attention processor with
    fused qkv layers for the image (`qkv_lora1`) and text (`qkv_lora2`) streams."""
    width = FLUX_WIDTHS[_size(tiny)][0]
    tensors = {}
    processor = "double_blocks.0.processor"
    for n, (module, out_features) in enumerate(
        [("qkv_lora1", 3 * width), ("proj_lora1", width), ("qkv_lora2", 3 * width),
         ("proj_lora2", width)]
    ):
        down, up = _pair(rank, width, out_features, seed + n)
        tensors[f"{processor}.{module}.down.weight"] = down
        tensors[f"{processor}.{module}.up.weight"] = up
    return save(tensors)


def flux2_lora_bytes(*, diffusers=False, rank=4, seed=0):
    """A FLUX.2 LoRA at FLUX.2 [klein] 4B's width, which is FLUX.1's (3072): in Black Forest
    Labs' layout, FLUX.1's block names with FLUX.2's SwiGLU MLP widths (an MLP input of
    2 × 3 × the width); with `diffusers`, its diffusers names (`to_qkv_mlp_proj`)."""
    width = 3072
    if diffusers:
        layers = [
            ("transformer.transformer_blocks.0.attn.to_q", width, width),
            ("transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj", width, 9 * width),
        ]
    else:
        layers = [
            ("diffusion_model.double_blocks.0.img_attn.qkv", width, 3 * width),
            ("diffusion_model.double_blocks.0.img_mlp.0", width, 6 * width),
            ("diffusion_model.single_blocks.0.linear1", width, 9 * width),
        ]
    return _peft_bytes(layers, rank, seed, None)


def sd3_peft_lora_bytes(*, tiny=False, width=None, rank=4, seed=0, text_encoders=False,
                        second_attention=False, metadata=None):
    """An SD 3.x LoRA as diffusers' and ai-toolkit's trainers save it: the joint blocks'
    attention (`transformer.transformer_blocks.N.attn.…`, FLUX.1's double blocks' names);
    with `text_encoders`, both CLIPs' attention; with `second_attention`, SD 3.5 Medium's
    `attn2`. `width`: another transformer's (SD 3.5 Large: 2432)."""
    default_width, clip_width, clip_2_width = SD3_WIDTHS[_size(tiny)]
    width = width or default_width
    layers = [
        (f"transformer.transformer_blocks.{n}.attn.{module}", width, width)
        for n in (0, 1)
        for module in ("to_q", "to_k", "to_v", "add_q_proj")
    ]
    if second_attention:
        layers.append(("transformer.transformer_blocks.0.attn2.to_q", width, width))
    if text_encoders:
        attention = "text_model.encoder.layers.0.self_attn.q_proj"
        layers += [(f"text_encoder.{attention}", clip_width, clip_width),
                   (f"text_encoder_2.{attention}", clip_2_width, clip_2_width)]
    return _peft_bytes(layers, rank, seed, metadata)


def sd3_kohya_lora_bytes(*, rank=4, seed=0):
    """An SD 3.x LoRA in kohya's sd-scripts / Stability's naming (`joint_blocks`), which
    diffusers does not read."""
    width = SD3_WIDTHS["real"][0]
    tensors = {}
    for n, stream in enumerate(("x_block", "context_block")):
        name = f"lora_unet_joint_blocks_0_{stream}_attn_qkv"
        down, up = _pair(rank, width, 3 * width, seed + n)
        tensors[f"{name}.lora_down.weight"] = down
        tensors[f"{name}.lora_up.weight"] = up
        tensors[f"{name}.alpha"] = np.array(rank, dtype=np.float16)
    return save(tensors)


def _peft_bytes(layers, rank, seed, metadata):
    tensors = {}
    for n, (name, in_features, out_features) in enumerate(layers):
        down, up = _pair(rank, in_features, out_features, seed + n)
        tensors[f"{name}.lora_A.weight"] = down
        tensors[f"{name}.lora_B.weight"] = up
    return save(tensors, metadata=metadata or {"format": "pt"})


def checkpoint_bytes():
    """Not a LoRA: a (very) small full checkpoint's tensor names."""
    return save(
        {
            "model.diffusion_model.input_blocks.0.0.weight": np.zeros((4, 4), np.float16),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": np.zeros(
                (1, 4), np.float16
            ),
        }
    )


def pickle_bytes():
    """What torch.save writes in its legacy format starts with a pickle protocol byte."""
    return pickle.dumps({"state_dict": {"lora_unet_x.lora_down.weight": [0.0] * 16}}, protocol=2)


def torch_zip_bytes():
    return b"PK\x03\x04" + b"\0" * 200


def corrupt_header_bytes():
    header = b'{"lora_unet_x.lora_down.weight": {"dtype": "F16", "shape": [2, 2], "data_offs'
    return struct.pack("<Q", len(header)) + header + b"\0" * 8


def make_lora(team, user, name, family="sd15", *, data=None, seed=None, **fields):
    """A LoRA in `team`'s library, through the same checks and storage as an upload."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from generation.loras.services import check_lora_upload, lora_create

    if data is None:
        seed = seed if seed is not None else sum(map(ord, f"{team.pk}{name}"))
        data = kohya_lora_bytes(family, seed=seed)
    upload = SimpleUploadedFile(f"{name}.safetensors", data)
    checked = check_lora_upload(team=team, upload=upload)
    return lora_create(team=team, user=user, checked=checked, name=name, family=family, **fields)
