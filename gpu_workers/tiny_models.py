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
    ControlNetModel,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxControlNetModel,
    FluxControlPipeline,
    FluxFillPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3ControlNetModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.embeddings import IPAdapterTimeImageProjection
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

TINY_SD15_NAME = "tiny-sd15"
TINY_SDXL_NAME = "tiny-sdxl"
TINY_FLUX_NAME = "tiny-flux1"
TINY_SD3_NAME = "tiny-sd3"
TINY_CONTROLNET_NAME = "tiny-controlnet-sd15"
TINY_FLUX_CONTROLNET_NAME = "tiny-controlnet-flux1"
TINY_SD3_CONTROLNET_NAME = "tiny-controlnet-sd3"
TINY_IP_ADAPTER_NAME = "tiny-ip-adapter-sd15"
TINY_IP_ADAPTER_WEIGHTS = "ip-adapter.safetensors"

# A few BPE merges so the tokenizer really merges; the rest of the vocabulary is bytes.
_TINY_MERGES = ["t h", "i n", "a n", "e r", "o n</w>", "th e</w>", "c a", "ca t</w>"]


def build_tiny_sd15(path: str | Path, *, inpaint: bool = False) -> Path:
    """Build the tiny SD1.5-architecture pipeline as a diffusers folder at `path`; with
    `inpaint`, an inpainting model's: its UNet also takes the mask and the masked image's
    latents (9 input channels, as in stable-diffusion-inpainting).

    Idempotent: a folder that already has a model_index.json is returned untouched.
    """
    in_channels = 9 if inpaint else 4
    return _build_folder(
        path,
        lambda build_dir: _tiny_sd15_pipeline(
            build_dir / "tokenizer", unet_in_channels=in_channels
        ),
    )


def build_tiny_sdxl(path: str | Path, *, inpaint: bool = False) -> Path:
    """Build the tiny SDXL-architecture pipeline as a diffusers folder at `path`: two text
    encoders (the second with a projection, whose pooled output conditions the UNet with
    the sizes), a UNet with SDXL's "text_time" added conditioning; with `inpaint`, a UNet
    with 9 input channels, as in stable-diffusion-xl-1.0-inpainting.

    Idempotent: a folder that already has a model_index.json is returned untouched.
    """
    in_channels = 9 if inpaint else 4
    return _build_folder(
        path, lambda build_dir: _tiny_sdxl_pipeline(build_dir, unet_in_channels=in_channels)
    )


def build_tiny_controlnet(path: str | Path, *, sdxl: bool = False) -> Path:
    """Build a tiny ControlNet for the tiny SD1.5 model (or, with `sdxl`, the tiny SDXL
    one, with SDXL's "text_time" added conditioning) as a diffusers folder at `path`:
    `ControlNetModel.from_unet` of a UNet of the tiny architecture, with its conditioning
    embedding reaching the latents' resolution (÷8) in four blocks.

    A ControlNet made from a UNet starts with zero convolutions (its residuals are zero
    until trained); here they get random weights too, so that the ControlNet visibly steers
    the image, as a trained one does.

    Idempotent: a folder that already has a config.json is returned untouched.
    """
    return _build_folder(path, lambda build_dir: _tiny_controlnet(sdxl), marker="config.json")


def _tiny_controlnet(sdxl: bool) -> ControlNetModel:
    if sdxl:
        unet = _tiny_sdxl_unet(in_channels=4, cross_attention_dim=80, pooled_dim=48)
    else:
        unet = _tiny_sd15_unet(in_channels=4, cross_attention_dim=32)
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 16, 32)
    )
    zero_convs = [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    for conv in zero_convs:
        torch.nn.init.normal_(conv.weight, std=0.05)
        torch.nn.init.normal_(conv.bias, std=0.05)
    return controlnet


def _build_folder(path: str | Path, make_pipeline, *, marker: str = "model_index.json") -> Path:
    """`make_pipeline(build_dir)`, seeded, saved as a diffusers folder at `path`."""
    path = Path(path)
    if (path / marker).exists():
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
            pipe = make_pipeline(build_dir)
        pipe.save_pretrained(build_dir, safe_serialization=True)
        try:
            build_dir.rename(path)  # replaces an empty folder, refuses a non-empty one
        except OSError:
            if not (path / marker).exists():
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
    unet = _tiny_sd15_unet(
        in_channels=unet_in_channels, cross_attention_dim=text_encoder.config.hidden_size
    )
    vae = _tiny_vae(scaling_factor=0.18215)
    scheduler = _sd_scheduler()
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


def _tiny_sd15_unet(*, in_channels: int, cross_attention_dim: int) -> UNet2DConditionModel:
    # SD1.5's layout (cross-attention blocks, then a plain block at the lowest resolution),
    # cut from four resolutions to two and from 320..1280 channels to 32..64.
    return UNet2DConditionModel(
        sample_size=8,  # latents; ×8 = 64 px default size
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=32,
        cross_attention_dim=cross_attention_dim,
    )


def _tiny_vae(*, scaling_factor: float, shift_factor: float | None = None) -> AutoencoderKL:
    # Four blocks, like SD's VAE, so images are 8× the latents; 8 and 16 channels only. SD's
    # has 4 latent channels; FLUX.1's and SD3's (those with a shift) 16, no quant convolutions.
    flow = shift_factor is not None
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=16 if flow else 4,
        sample_size=64,
        use_quant_conv=not flow,
        use_post_quant_conv=not flow,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    )


def _sd_scheduler() -> EulerDiscreteScheduler:
    # SD1.5's noise schedule, which SDXL kept; Euler is what A1111 users know as "Euler".
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )


def _tiny_sdxl_pipeline(build_dir: Path, *, unet_in_channels: int) -> StableDiffusionXLPipeline:
    # SDXL's first tokenizer pads with its end token, the second (OpenCLIP's) with "!".
    tokenizer = tiny_clip_tokenizer(build_dir / "tokenizer")
    tokenizer_2 = tiny_clip_tokenizer(build_dir / "tokenizer_2", pad_token="!")

    def text_config(tokenizer: CLIPTokenizer, hidden_size: int, hidden_act: str):
        return CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            projection_dim=hidden_size,  # as in ViT-bigG, whose projection keeps its width
            num_hidden_layers=3,  # clip skip 2 still has a layer before the penultimate
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            hidden_act=hidden_act,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )

    # CLIP ViT-L (quick_gelu) and the wider OpenCLIP ViT-bigG (gelu, with a text projection
    # whose pooled output is one of SDXL's added conditions). Their widths differ, as in
    # SDXL (768 and 1280): single-file loading tells the two apart by width.
    text_encoder = CLIPTextModel(text_config(tokenizer, 32, "quick_gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(text_config(tokenizer_2, 48, "gelu"))
    # SDXL's layout: a plain block at the highest resolution, then cross-attention blocks
    # with linear projections and several transformer layers; the two encoders' hidden
    # states side by side as cross-attention context; sizes and the pooled prompt as an
    # added embedding ("text_time": 6 size numbers × addition_time_embed_dim + pooled).
    # Cut from three resolutions to two and from 320..1280 channels to 32..64.
    unet = _tiny_sdxl_unet(
        in_channels=unet_in_channels,
        cross_attention_dim=text_encoder.config.hidden_size + text_encoder_2.config.hidden_size,
        pooled_dim=text_encoder_2.config.projection_dim,
    )
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(scaling_factor=0.13025),  # SDXL VAE's scaling factor
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=_sd_scheduler(),
        force_zeros_for_empty_prompt=True,  # as SDXL base: no negative prompt → zeros
        add_watermarker=False,
    )


def _tiny_sdxl_unet(
    *, in_channels: int, cross_attention_dim: int, pooled_dim: int
) -> UNet2DConditionModel:
    addition_time_embed_dim = 8
    return UNet2DConditionModel(
        sample_size=8,  # latents; ×8 = 64 px default size
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=2,
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=32,
        cross_attention_dim=cross_attention_dim,
        addition_embed_type="text_time",
        addition_time_embed_dim=addition_time_embed_dim,
        projection_class_embeddings_input_dim=6 * addition_time_embed_dim + pooled_dim,
    )


def build_tiny_flux(path: str | Path, *, schnell: bool = False) -> Path:
    """Build the tiny FLUX.1 [dev]-architecture pipeline as a diffusers folder at `path`: CLIP
    (its pooled output) and T5 (its sequence) text encoders, a transformer with double- and
    single-stream blocks, rotary positions over (text, row, column) ids and an embedded
    distilled guidance value, a 16-channel VAE whose latents the pipeline packs 2×2 into
    64-channel tokens, and the flow-matching Euler scheduler with resolution-dependent shift.
    With `schnell`, FLUX.1 [schnell]'s: no guidance input, a fixed shift of 1.

    Idempotent: a folder that already has a model_index.json is returned untouched.
    """
    return _build_folder(path, lambda build_dir: _tiny_flux_pipeline(build_dir, schnell=schnell))


def build_tiny_flux_fill(path: str | Path) -> Path:
    """Build the tiny FLUX.1 Fill-architecture pipeline (FluxFillPipeline) as a diffusers
    folder at `path`: the tiny FLUX.1 [dev] one whose transformer takes 384 input channels,
    the packed latents (64), the packed latents of the masked source image (64) and the mask
    packed 8×8 and 2×2 (256), and gives the 64 of the latents' velocity.

    Idempotent: a folder that already has a model_index.json is returned untouched.
    """
    return _build_folder(
        path, lambda build_dir: _tiny_flux_pipeline(build_dir, schnell=False, fill=True)
    )


def build_tiny_flux_control(path: str | Path) -> Path:
    """Build the tiny FLUX.1 Depth / Canny [dev]-architecture pipeline (FluxControlPipeline)
    as a diffusers folder at `path`: the tiny FLUX.1 [dev] one whose transformer takes 128
    input channels, the packed latents (64) and the control image's packed latents (64), and
    gives the 64 of the latents' velocity.

    Idempotent: a folder that already has a model_index.json is returned untouched.
    """
    return _build_folder(
        path, lambda build_dir: _tiny_flux_pipeline(build_dir, schnell=False, control=True)
    )


def build_tiny_sd3(path: str | Path) -> Path:
    """Build the tiny Stable Diffusion 3.x-architecture pipeline as a diffusers folder at
    `path`: two CLIP text encoders with projections (hidden states side by side, padded to
    T5's width, then T5's sequence; the pooled outputs side by side), an MMDiT transformer
    on 2×2 patches, a 16-channel VAE with a shift, and the flow-matching Euler scheduler
    (shift 3).

    Idempotent: a folder that already has a model_index.json is returned untouched.
    """
    return _build_folder(path, _tiny_sd3_pipeline)


def build_tiny_flux_controlnet(path: str | Path, *, xlabs: bool = False) -> Path:
    """Build a tiny FluxControlNetModel for the tiny FLUX.1 [dev] model (build_tiny_flux's
    widths, rotary axes and guidance input) as a diffusers folder at `path`, InstantX's
    layout: the control image enters as packed VAE latents, no hint block. With `xlabs`,
    XLabs' layout: a hint block reads the control image's pixels (÷8, then 2×2 patches) and
    its double-stream blocks alone repeat over the model's. Its zero-initialised layers get
    random weights, so that it steers the image as a trained one does.

    Idempotent: a folder that already has a config.json is returned untouched.
    """
    return _build_folder(path, lambda build_dir: _tiny_flux_controlnet(xlabs), marker="config.json")


def _tiny_flux_controlnet(xlabs: bool) -> FluxControlNetModel:
    controlnet = FluxControlNetModel(
        patch_size=2 if xlabs else 1,
        in_channels=64,
        num_layers=1,
        num_single_layers=0 if xlabs else 1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # the tiny T5's width
        pooled_projection_dim=32,  # the tiny CLIP's
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
        conditioning_embedding_channels=16 if xlabs else None,
    )
    _randomise(
        [
            *controlnet.controlnet_blocks,
            *controlnet.controlnet_single_blocks,
            controlnet.controlnet_x_embedder,
        ]
    )
    return controlnet


def build_tiny_sd3_controlnet(path: str | Path) -> Path:
    """Build a tiny SD3ControlNetModel for the tiny SD 3.x model (build_tiny_sd3's widths and
    patches) as a diffusers folder at `path`, InstantX's layout: the control image enters as
    VAE latents, the pooled prompt as zeros. Its zero-initialised layers get random weights.

    Idempotent: a folder that already has a config.json is returned untouched.
    """
    return _build_folder(path, lambda build_dir: _tiny_sd3_controlnet(), marker="config.json")


def _tiny_sd3_controlnet() -> SD3ControlNetModel:
    controlnet = SD3ControlNetModel(
        sample_size=8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=96,  # the tiny T5's width
        caption_projection_dim=32,
        pooled_projection_dim=80,  # the two tiny CLIPs' projections side by side
        pos_embed_max_size=64,
        qk_norm="rms_norm",
    )
    _randomise([*controlnet.controlnet_blocks, controlnet.pos_embed_input.proj])
    return controlnet


def _randomise(layers) -> None:
    """Random weights for a ControlNet's zero-initialised layers (whose output is zero
    until trained)."""
    for layer in layers:
        torch.nn.init.normal_(layer.weight, std=0.05)
        torch.nn.init.normal_(layer.bias, std=0.05)


def _tiny_clip(tokenizer: CLIPTokenizer, hidden_size: int, *, projection: bool):
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=3,  # SD3 reads the penultimate layer
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _tiny_t5(tokenizer: T5Tokenizer, d_model: int) -> T5EncoderModel:
    # T5 v1.1's encoder (gated GELU), as FLUX.1 and SD3 use; 2 layers of 32 channels.
    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=d_model,
            d_kv=8,
            d_ff=2 * d_model,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    )


def _tiny_flux_pipeline(
    build_dir: Path, *, schnell: bool, fill: bool = False, control: bool = False
) -> FluxPipeline:
    tokenizer = tiny_clip_tokenizer(build_dir / "tokenizer")
    tokenizer_2 = tiny_t5_tokenizer(build_dir / "tokenizer_2", model_max_length=512)
    text_encoder = _tiny_clip(tokenizer, 32, projection=False)
    text_encoder_2 = _tiny_t5(tokenizer_2, 32)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        # 16 latent channels packed 2×2 (Fill, Depth / Canny: see above)
        in_channels=384 if fill else 128 if control else 64,
        out_channels=64 if fill or control else None,  # None: as many as in
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_encoder_2.config.d_model,
        pooled_projection_dim=text_encoder.config.hidden_size,
        guidance_embeds=not schnell,  # [dev]: the distilled guidance value is an input
        axes_dims_rope=(4, 6, 6),  # sums to the head width, as (16, 56, 56) does to 128
    )
    if schnell:
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False
        )
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    pipeline_class = FluxFillPipeline if fill else FluxControlPipeline if control else FluxPipeline
    return pipeline_class(
        scheduler=scheduler,
        vae=_tiny_vae(scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def _tiny_sd3_pipeline(build_dir: Path) -> StableDiffusion3Pipeline:
    # CLIP-L pads with its end token, OpenCLIP bigG with "!", as in SDXL.
    tokenizer = tiny_clip_tokenizer(build_dir / "tokenizer")
    tokenizer_2 = tiny_clip_tokenizer(build_dir / "tokenizer_2", pad_token="!")
    tokenizer_3 = tiny_t5_tokenizer(build_dir / "tokenizer_3", model_max_length=256)
    text_encoder = _tiny_clip(tokenizer, 32, projection=True)
    text_encoder_2 = _tiny_clip(tokenizer_2, 48, projection=True)
    # T5 is wider than the two CLIPs side by side (4096 against 768 + 1280 in SD3).
    text_encoder_3 = _tiny_t5(tokenizer_3, 96)
    transformer = SD3Transformer2DModel(
        sample_size=8,  # latents; ×8 = 64 px default size
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=text_encoder_3.config.d_model,
        caption_projection_dim=32,  # the transformer's width: heads × head width
        pooled_projection_dim=(
            text_encoder.config.projection_dim + text_encoder_2.config.projection_dim
        ),
        pos_embed_max_size=64,  # up to 1024 px
        qk_norm="rms_norm",  # as SD3.5
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_tiny_vae(scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


def build_tiny_ip_adapter(path: str | Path, *, sdxl: bool = False) -> Path:
    """Build a tiny IP-Adapter for the tiny SD1.5 model (or, with `sdxl`, the tiny SDXL
    one) as a folder at `path`, laid out like h94/IP-Adapter's: `ip-adapter.safetensors`
    (`image_proj.*`: the image embedding projected to 4 extra context tokens;
    `ip_adapter.<n>.to_k_ip/to_v_ip`: a key and value projection for those tokens in every
    cross-attention layer, numbered as diffusers' load_ip_adapter reads them) and a tiny
    CLIPVisionModelWithProjection in `image_encoder/`.

    Idempotent: a folder that already has the weights is returned untouched.
    """
    return _build_folder(
        path, lambda build_dir: _TinyIPAdapter(sdxl=sdxl), marker=TINY_IP_ADAPTER_WEIGHTS
    )


class _TinyIPAdapter:
    """The tiny adapter's tensors and image encoder, saved as build_tiny_ip_adapter says."""

    def __init__(self, *, sdxl: bool):
        if sdxl:
            unet = _tiny_sdxl_unet(in_channels=4, cross_attention_dim=80, pooled_dim=48)
        else:
            unet = _tiny_sd15_unet(in_channels=4, cross_attention_dim=32)
        cross_attention_dim = unet.config.cross_attention_dim
        self.image_encoder = _tiny_clip_vision()
        embed_dim = self.image_encoder.config.projection_dim
        projection = torch.nn.Linear(embed_dim, 4 * cross_attention_dim)
        norm = torch.nn.LayerNorm(cross_attention_dim)
        torch.nn.init.normal_(norm.weight, mean=1.0, std=0.1)
        self.tensors = {
            "image_proj.proj.weight": projection.weight,
            "image_proj.proj.bias": projection.bias,
            "image_proj.norm.weight": norm.weight,
            "image_proj.norm.bias": norm.bias,
        }
        cross_attention = [
            name for name in unet.attn_processors if not name.endswith("attn1.processor")
        ]
        for number, name in enumerate(cross_attention):
            hidden_size = _block_width(unet, name)
            for projected in ("to_k_ip", "to_v_ip"):
                layer = torch.nn.Linear(cross_attention_dim, hidden_size, bias=False)
                self.tensors[f"ip_adapter.{2 * number + 1}.{projected}.weight"] = layer.weight

    def save_pretrained(self, directory: Path, *, safe_serialization: bool) -> None:
        tensors = {name: tensor.detach().contiguous() for name, tensor in self.tensors.items()}
        save_file(tensors, directory / TINY_IP_ADAPTER_WEIGHTS)
        self.image_encoder.save_pretrained(
            directory / "image_encoder", safe_serialization=safe_serialization
        )


def build_tiny_flux_ip_adapter(path: str | Path) -> Path:
    """Build a tiny IP-Adapter for the tiny FLUX.1 model as a folder at `path`, in XLabs'
    layout (XLabs-AI/flux-ip-adapter), as diffusers' FluxIPAdapterMixin.load_ip_adapter
    reads it: `ip_adapter_proj_model.*` (the image embedding projected to 4 tokens of T5's
    width) and `double_blocks.<n>.processor.ip_adapter_double_stream_k_proj/v_proj.*` (a
    key and value projection for those tokens in every double-stream block), and a tiny
    CLIPVisionModelWithProjection in `image_encoder/`.

    Idempotent: a folder that already has the weights is returned untouched.
    """
    return _build_folder(
        path, lambda build_dir: _TinyFluxIPAdapter(), marker=TINY_IP_ADAPTER_WEIGHTS
    )


class _TinyFluxIPAdapter(_TinyIPAdapter):
    """The tiny XLabs-layout adapter's tensors and image encoder (saved as its parent's)."""

    def __init__(self):
        transformer_width = 32  # the tiny FLUX.1 transformer's: 2 heads of 16
        text_width = 32  # its joint_attention_dim, T5's d_model
        double_blocks = 1
        self.image_encoder = _tiny_clip_vision()
        embed_dim = self.image_encoder.config.projection_dim
        projection = torch.nn.Linear(embed_dim, 4 * text_width)
        norm = torch.nn.LayerNorm(text_width)
        torch.nn.init.normal_(norm.weight, mean=1.0, std=0.1)
        self.tensors = {
            "ip_adapter_proj_model.proj.weight": projection.weight,
            "ip_adapter_proj_model.proj.bias": projection.bias,
            "ip_adapter_proj_model.norm.weight": norm.weight,
            "ip_adapter_proj_model.norm.bias": norm.bias,
        }
        for block in range(double_blocks):
            for projected in ("k_proj", "v_proj"):
                layer = torch.nn.Linear(text_width, transformer_width)
                name = f"double_blocks.{block}.processor.ip_adapter_double_stream_{projected}"
                self.tensors[f"{name}.weight"] = layer.weight
                self.tensors[f"{name}.bias"] = layer.bias


def build_tiny_sd3_ip_adapter(path: str | Path) -> Path:
    """Build a tiny IP-Adapter for the tiny SD 3.x model as a folder at `path`, in
    InstantX/SD3.5-Large-IP-Adapter's layout, as diffusers' SD3IPAdapterMixin.load_ip_adapter
    reads it: `image_proj.*` (the time-aware resampler, IPAdapterTimeImageProjection, under
    InstantX's names: `layers.<n>.0.to_q`, `layers.<n>.1.0`...), `ip_adapter.<n>.*` (each
    joint attention layer's SD3IPAdapterJointAttnProcessor2_0: `norm_ip`, `to_k_ip`,
    `to_v_ip`), and a tiny SiglipVisionModel with its SiglipImageProcessor in
    `image_encoder/`.

    Idempotent: a folder that already has the weights is returned untouched.
    """
    return _build_folder(
        path, lambda build_dir: _TinySD3IPAdapter(), marker=TINY_IP_ADAPTER_WEIGHTS
    )


# diffusers' names in IPAdapterTimeImageProjection's blocks, and InstantX's, which
# SD3Transformer2DLoadersMixin._convert_ip_adapter_image_proj_to_diffusers renames.
_INSTANTX_BLOCK_NAMES = {
    "ln0": "0.norm1",
    "ln1": "0.norm2",
    "attn.to_q": "0.to_q",
    "attn.to_kv": "0.to_kv",
    "attn.to_out.0": "0.to_out",
    "adaln_norm": "1.0",
    "ff.net.0.proj": "1.1",
    "ff.net.2": "1.3",
    "adaln_proj": "2.1",
}


class _TinySD3IPAdapter(_TinyIPAdapter):
    """The tiny InstantX-layout adapter's tensors and SigLIP encoder (saved as its
    parent's, with the encoder's image processor)."""

    def __init__(self):
        transformer_width = 32  # the tiny SD 3.x transformer's: 4 heads of 8
        head_width = 8
        joint_attention_layers = 2
        self.image_encoder = _tiny_siglip_vision()
        image_size = self.image_encoder.config.image_size
        self.feature_extractor = SiglipImageProcessor(
            size={"height": image_size, "width": image_size}
        )
        # diffusers infers every size but the depth (4) and head width (64) from the tensors.
        projection = IPAdapterTimeImageProjection(
            embed_dim=self.image_encoder.config.hidden_size,
            output_dim=transformer_width,
            hidden_dim=32,
            heads=1,
            num_queries=4,
            timestep_in_dim=32,
        )
        self.tensors = {
            f"image_proj.{_instantx_name(name)}": tensor
            for name, tensor in projection.state_dict().items()
        }
        for layer in range(joint_attention_layers):
            processor = SD3IPAdapterJointAttnProcessor2_0(
                hidden_size=transformer_width,
                ip_hidden_states_dim=transformer_width,
                head_dim=head_width,
                timesteps_emb_dim=32,  # the projection's hidden width
            )
            for name, tensor in processor.state_dict().items():
                self.tensors[f"ip_adapter.{layer}.{name}"] = tensor

    def save_pretrained(self, directory: Path, *, safe_serialization: bool) -> None:
        super().save_pretrained(directory, safe_serialization=safe_serialization)
        self.feature_extractor.save_pretrained(directory / "image_encoder")


def _instantx_name(name: str) -> str:
    """An IPAdapterTimeImageProjection tensor's name in InstantX's file."""
    if not name.startswith("layers."):
        return name
    _, block, rest = name.split(".", 2)
    for diffusers_name, instantx_name in _INSTANTX_BLOCK_NAMES.items():
        if rest.startswith(f"{diffusers_name}."):
            rest = instantx_name + rest.removeprefix(diffusers_name)
            break
    return f"layers.{block}.{rest}"


def _tiny_siglip_vision() -> SiglipVisionModel:
    """A tiny SigLIP image encoder, SD 3.x IP-Adapters' (random weights)."""
    return SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )


def _tiny_clip_vision() -> CLIPVisionModelWithProjection:
    """A tiny CLIP image encoder, the IP-Adapters' (random weights)."""
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )


def _block_width(unet: UNet2DConditionModel, processor_name: str) -> int:
    """The channels of the UNet block an attention processor is in (diffusers' rule)."""
    channels = unet.config.block_out_channels
    if processor_name.startswith("mid_block"):
        return channels[-1]
    block = int(processor_name.split(".")[1])
    if processor_name.startswith("up_blocks"):
        return list(reversed(channels))[block]
    return channels[block]


def tiny_clip_tokenizer(directory: Path, *, pad_token: str | None = None) -> CLIPTokenizer:
    """A byte-level BPE tokenizer laid out like CLIP's: bytes, bytes + "</w>", merges,
    then the two special tokens. Written as vocab.json/merges.txt, the files CLIP ships.
    `pad_token`: None pads with the end token, as OpenAI's CLIP does."""
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
    if pad_token is None:
        return CLIPTokenizer.from_pretrained(directory, model_max_length=77)
    return CLIPTokenizer.from_pretrained(directory, model_max_length=77, pad_token=pad_token)


def tiny_t5_tokenizer(directory: Path, *, model_max_length: int) -> T5Tokenizer:
    """A SentencePiece-style Unigram tokenizer laid out like T5's (pad, end, unknown, then
    pieces with "▁" marking a word's start), over lowercase letters, digits and a few
    words; saved as tokenizer.json, which T5's tokenizer loads without sentencepiece."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{word}", -1.0) for word in ("cat", "on", "the", "mat", "of")]
    characters = "abcdefghijklmnopqrstuvwxyz0123456789,.()"
    pieces += [(character, -3.0) for character in characters]
    pieces += [(f"▁{character}", -3.5) for character in characters]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)
    tokenizer.save_pretrained(directory)
    return T5Tokenizer.from_pretrained(directory)


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


_BUILDERS = {
    "--sdxl": (build_tiny_sdxl, TINY_SDXL_NAME),
    "--flux": (build_tiny_flux, TINY_FLUX_NAME),
    "--sd3": (build_tiny_sd3, TINY_SD3_NAME),
}

if __name__ == "__main__":
    arguments = sys.argv[1:]
    build = build_tiny_sd15
    if arguments[:1] and arguments[0] in _BUILDERS:
        build = _BUILDERS[arguments.pop(0)][0]
    if len(arguments) != 1:
        named = ", ".join(f"{name} with {flag}" for flag, (_, name) in _BUILDERS.items())
        sys.exit(
            f"usage: python -m gpu_workers.tiny_models [--sdxl|--flux|--sd3] PATH  (builds "
            f"{TINY_SD15_NAME}, or {named})"
        )
    print(build(arguments[0]))
