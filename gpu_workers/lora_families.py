"""The base model family a LoRA was made for, told from its tensor names and shapes alone
(torch-free: the library reads them from the file's header on web nodes, the worker before
it loads a LoRA into a pipeline).

Families are the library's: "sd15", "sd2", "sdxl", "flux1", "sd3" (gpu_workers.checkpoints'
architecture names). The layouts are those diffusers' LoRA loaders read
(diffusers/loaders/lora_conversion_utils.py, lora_pipeline.py):

- Stable Diffusion 1.x / 2.x / XL: kohya (`lora_unet_…`, `lora_te_…`) and diffusers/peft
  (`unet.…`, `text_encoder.…`); the cross-attention's width tells the family.
- FLUX.1: kohya / sd-scripts (`lora_unet_double_blocks_0_img_attn_qkv…`,
  `lora_unet_single_blocks_…`, `lora_te1_…` for its CLIP), ComfyUI's (`diffusion_model.`
  in place of `lora_unet_`), ai-toolkit and diffusers/peft
  (`transformer.single_transformer_blocks.…lora_A.weight`), XLabs
  (`double_blocks.0.processor.qkv_lora1.down.weight`). Of the families the studio runs,
  only FLUX.1 has single-stream blocks.
- SD 3.x: diffusers/peft (`transformer.transformer_blocks.N.attn.…`: MMDiT joint blocks, the
  same names as FLUX.1's double blocks, told apart by SD 3.5's second attention, two CLIP
  text encoders, or the transformer's width), and Stability's / kohya's `joint_blocks`
  naming, which diffusers does not read (KOHYA_SD3_MARKER).
- FLUX.2 ("flux2"), named to be refused: Black Forest Labs' layout names its blocks as
  FLUX.1's, its diffusers layout has layers of its own; its width (6144) or its MLPs' widths
  tell it.
"""

import re

SD15, SD2, SDXL, FLUX1, SD3 = "sd15", "sd2", "sdxl", "flux1", "sd3"
# FLUX.2 names its layers as FLUX.1 does in Black Forest Labs' layout: told apart so that
# its LoRAs are refused, never taken for FLUX.1's (gpu_workers.checkpoints refuses its
# models alike).
FLUX2 = "flux2"

DOWN_MARKERS = (
    ".lora_down.weight",  # kohya
    ".lora_A.weight",  # peft
    ".lora.down.weight",  # diffusers' older attention processors
    "_lora.down.weight",
    "_lora1.down.weight",  # XLabs: qkv_lora1 (image stream), qkv_lora2 (text stream)
    "_lora2.down.weight",
)

# Width of the UNet's cross-attention input (its text embedding), per base family.
CROSS_ATTENTION_FAMILY = {768: SD15, 1024: SD2, 2048: SDXL, 1280: SDXL}
# Width of a text encoder's hidden states, when only the text encoder has LoRA layers.
TEXT_ENCODER_FAMILY = {768: SD15, 1024: SD2}
# Width of the diffusion transformer (heads × 64): FLUX.1 [dev] / [schnell] 3072; SD 3
# Medium and SD 3.5 Medium 1536, SD 3.5 Large 2432.
TRANSFORMER_FAMILY = {3072: FLUX1, 1536: SD3, 2432: SD3}

# FLUX.2 [dev]'s width (48 heads × 128).
FLUX2_WIDTH = 6144
# FLUX.2's layers that FLUX.1 has not: its diffusers names (a fused qkv-and-MLP projection
# in single blocks, SwiGLU MLPs, modulation shared by all blocks, the guidance embedder).
_FLUX2_NAMES = re.compile(
    r"to_qkv_mlp_proj|stream_modulation|[._]ff(_context)?[._]linear_in|time_guidance_embed"
)
# FLUX.2's output / input widths of layers FLUX.1 has with other ones: its SwiGLU MLPs'
# inputs are 2 × 3 × the width (FLUX.1's MLPs 4 ×), so single blocks' linear1 (q, k, v and
# the MLP's input) is 9 × (FLUX.1's 7 ×).
_FLUX2_RATIOS = [
    (re.compile(r"single_blocks[._]\d+[._]linear1[._]"), 9),
    (re.compile(r"(img|txt)_mlp[._]0[._]"), 6),
]
_FLUX_BLOCK = re.compile(
    r"(^|[._])(double|single)_blocks[._]\d"
    r"|^(transformer\.|lora_transformer_|diffusion_model\.)?(single_)?transformer_blocks[._]\d"
)
_UP_MARKERS = {".lora_down.weight": ".lora_up.weight", ".lora_A.weight": ".lora_B.weight"}

# Stability's / kohya's SD 3.x naming: diffusers' SD3 loader reads none of it.
KOHYA_SD3_MARKER = re.compile(r"(^|[._])joint_blocks[._]\d")
# Names only one flow family has, first match wins: (pattern, family, evidence).
_FLOW_MARKERS = [
    (re.compile(r"(^|[._])double_blocks[._]\d"), FLUX1, "FLUX.1's double-stream blocks"),
    (re.compile(r"(^|[._])single_blocks[._]\d"), FLUX1, "FLUX.1's single-stream blocks"),
    (re.compile(r"single_transformer_blocks[._]\d"), FLUX1, "FLUX.1's single-stream blocks"),
    (re.compile(r"guidance_(embedder|in)[._]"), FLUX1, "FLUX.1's guidance embedder"),
    (KOHYA_SD3_MARKER, SD3, "SD 3.x's joint blocks"),
    # SD 3.5 Medium's MMDiT-X blocks have a second, image-only attention.
    (
        re.compile(r"^(transformer\.|lora_transformer_)transformer_blocks[._]\d+[._]attn2[._]"),
        SD3,
        "SD 3.5's second attention in its joint blocks",
    ),
]
# A LoRA on a diffusion transformer's blocks (FLUX.1's double blocks or SD 3.x's joint
# blocks, as diffusers names both), not on a UNet's `…attentions.N.transformer_blocks`.
_TRANSFORMER_BLOCK = re.compile(r"^(transformer\.|lora_transformer_)?transformer_blocks[._]\d")
_TRANSFORMER_ATTENTION = re.compile(r"[._]attn[._]to_[qkv]\.")
_SECOND_CLIP_PREFIXES = ("text_encoder_2.", "lora_te2_")


def lora_family(shapes: dict[str, list[int]]) -> tuple[str | None, str]:
    """(family, evidence) for a LoRA whose tensors have these names and shapes; evidence
    says how, for messages. (None, "") when the tensors don't tell."""
    downs = [key for key in shapes if key.endswith(DOWN_MARKERS)]
    flow = _flow_family(shapes, downs)
    if flow is not None:
        return flow
    for key in downs:
        flat = key.replace(".", "_")
        if "attn2" in flat and "to_k" in flat:
            width = _in_features(shapes[key])
            if width in CROSS_ATTENTION_FAMILY:
                return CROSS_ATTENTION_FAMILY[width], f"cross-attention width {width}"
    if any(key.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) for key in shapes):
        return SDXL, "two text encoders"
    for key in downs:
        if key.startswith(("lora_te_", "text_encoder.", "te.")):
            width = _in_features(shapes[key])
            if width in TEXT_ENCODER_FAMILY:
                return TEXT_ENCODER_FAMILY[width], f"text encoder width {width}"
    return None, ""


def _flow_family(shapes, downs) -> tuple[str | None, str] | None:
    """FLUX.1's, SD 3.x's or FLUX.2's (family, evidence); (None, "") for a transformer LoRA
    that doesn't say which; None for a LoRA on no diffusion transformer."""
    flux2 = _flux2_evidence(shapes, downs)
    if flux2:
        return FLUX2, flux2
    for pattern, family, evidence in _FLOW_MARKERS:
        if any(pattern.search(key) for key in shapes):
            return family, evidence
    blocks = [key for key in downs if _TRANSFORMER_BLOCK.match(key)]
    if not blocks:
        return None
    if any(key.startswith(_SECOND_CLIP_PREFIXES) for key in shapes):
        return SD3, "joint transformer blocks with two CLIP text encoders"
    for key in blocks:
        width = _in_features(shapes[key]) if _TRANSFORMER_ATTENTION.search(key) else None
        if width in TRANSFORMER_FAMILY:
            return TRANSFORMER_FAMILY[width], f"transformer width {width}"
    return None, ""


def _flux2_evidence(shapes, downs) -> str:
    """How the tensors show a FLUX.2 LoRA, or ""."""
    if any(_FLUX2_NAMES.search(key) for key in shapes):
        return "FLUX.2's layer names"
    for key in downs:
        if _FLUX_BLOCK.search(key) and _in_features(shapes[key]) == FLUX2_WIDTH:
            return f"transformer width {FLUX2_WIDTH}"
        up = _up_key(key)
        width = _in_features(shapes[key])
        if up not in shapes or not width or not shapes[up]:
            continue
        for pattern, flux2_ratio in _FLUX2_RATIOS:
            if pattern.search(key) and shapes[up][0] == flux2_ratio * width:
                return "FLUX.2's MLP widths"
    return ""


def _up_key(down_key: str) -> str | None:
    """The up (B) matrix's name beside a kohya or peft down (A) matrix's."""
    for down, up in _UP_MARKERS.items():
        if down_key.endswith(down):
            return down_key.removesuffix(down) + up
    return None


def _in_features(shape) -> int | None:
    return shape[1] if len(shape) >= 2 else None
