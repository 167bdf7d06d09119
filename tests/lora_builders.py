"""LoRA files for tests, built from numpy arrays in the layouts real tools write: kohya
(`lora_unet_…_lora_down.weight`, `ss_*` metadata) and diffusers/peft (`unet.….lora_A.weight`).
Shapes follow the real architectures (SD 1.x cross-attention 768, SD 2.x 1024, SDXL 2048)
on a couple of layers, so the files stay a few kilobytes."""

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
