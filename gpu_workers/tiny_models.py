"""Tiny random-weight models with the real architectures, built locally from configs.

Tests and the offline demo use them instead of downloaded weights: they load through the
same code path as a Hub id or a real diffusers folder and run in well under a second on a
CPU. The images are noise-like; only the plumbing is real.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TINY_SD15_NAME = "tiny-sd15"

# A few BPE merges so the tokenizer really merges; the rest of the vocabulary is bytes.
_TINY_MERGES = ["t h", "i n", "a n", "e r", "o n</w>", "th e</w>", "c a", "ca t</w>"]


def build_tiny_sd15(path: str | Path, *, inpaint: bool = False) -> Path:
    """Build the tiny SD1.5-architecture pipeline as a diffusers folder at `path`; with
    `inpaint`, an inpainting model's: its UNet also takes the mask and the masked image's
    latents (9 input channels, as in stable-diffusion-inpainting).

    Idempotent: a folder that already has a model_index.json is returned untouched.
    """
    path = Path(path)
    if (path / "model_index.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Built next to the target and renamed into place, so an interrupted build never leaves
    # a folder that looks complete.
    build_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        # Seeded weights: every machine builds the same model. fork_rng keeps the caller's
        # global RNG state as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            in_channels = 9 if inpaint else 4
            pipe = _tiny_sd15_pipeline(build_dir / "tokenizer", unet_in_channels=in_channels)
        pipe.save_pretrained(build_dir, safe_serialization=True)
        try:
            build_dir.rename(path)  # replaces an empty folder, refuses a non-empty one
        except OSError:
            if not (path / "model_index.json").exists():
                raise
            # Another process finished the same build first; its folder is as good as ours.
    finally:
        if build_dir.exists():
            shutil.rmtree(build_dir)
    return path


def _tiny_sd15_pipeline(tokenizer_dir: Path, *, unet_in_channels: int) -> StableDiffusionPipeline:
    tokenizer = tiny_clip_tokenizer(tokenizer_dir)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            hidden_act="quick_gelu",  # as in SD1.5's CLIP ViT-L/14 text encoder
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # SD1.5's layout (cross-attention blocks, then a plain block at the lowest resolution),
    # cut from four resolutions to two and from 320..1280 channels to 32..64.
    unet = UNet2DConditionModel(
        sample_size=8,  # latents; ×8 = 64 px default size
        in_channels=unet_in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=32,
        cross_attention_dim=text_encoder.config.hidden_size,
    )
    # Four blocks, like SD's VAE, so images are 8× the latents; 8 and 16 channels only.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=64,
        scaling_factor=0.18215,
    )
    # SD1.5's noise schedule; Euler is what A1111 users know as "Euler".
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_clip_tokenizer(directory: Path) -> CLIPTokenizer:
    """A byte-level BPE tokenizer laid out like CLIP's: bytes, bytes + "</w>", merges,
    then the two special tokens. Written as vocab.json/merges.txt, the files CLIP ships."""
    byte_chars = _bytes_to_unicode()
    tokens = (
        byte_chars
        + [char + "</w>" for char in byte_chars]
        + [merge.replace(" ", "") for merge in _TINY_MERGES]
        + ["<|startoftext|>", "<|endoftext|>"]
    )
    directory.mkdir(parents=True)
    (directory / "vocab.json").write_text(
        json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False),
        encoding="utf-8",
    )
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(_TINY_MERGES) + "\n", encoding="utf-8"
    )
    # 77 tokens, as in SD1.5; the pipeline pads every prompt to this length.
    return CLIPTokenizer.from_pretrained(directory, model_max_length=77)


def _bytes_to_unicode() -> list[str]:
    """The printable character GPT-2/CLIP byte-level BPE uses for each byte 0..255."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {}
    shifted = 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + shifted)
            shifted += 1
    return [chars[byte] for byte in range(256)]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m gpu_workers.tiny_models PATH  (builds {TINY_SD15_NAME})")
    print(build_tiny_sd15(sys.argv[1]))
