"""A running batch of FLUX.1 or Stable Diffusion 3.x txt2img, img2img or inpaint requests
(FlowBatch), written out after FluxPipeline's, FluxImg2ImgPipeline's, FluxInpaintPipeline's
and their StableDiffusion3 counterparts' __call__ (diffusers 0.42).

The same contract as gpu_workers.denoise.RunningBatch, which the engine drives alike: each
request is a row with its own flow-matching scheduler (its sigmas and step index), noise
generator, guidance and prompts; rows at different steps share one transformer call (a
timestep per transformer row; with batch buckets padded to a bucket's rows, as RunningBatch's
UNet calls); a request alone gets the pipeline's image, and on the CPU a row in a batch gets
its image alone, bitwise (gpu_workers.batch_invariance).

- FLUX.1: CLIP's pooled prompt and T5's sequence; the latents packed 2×2 into tokens with
  their (text, row, column) ids; [dev] embeds the distilled guidance value, so no CFG rows
  ([schnell] has no guidance at all).
- SD 3.x: two CLIPs' hidden states and T5's sequence, the pooled prompts side by side; CFG
  rows where guidance_scale > 1, each request's unconditional row just before its
  conditional one.
- img2img: the source's latents noised to where the row's strength starts it; inpaint also
  blends the noised source back in outside the mask after each step (the plain 64 / 16
  channel transformers). FLUX.1 Fill (FluxFillPipeline; inpaint and outpaint only) blends
  nothing: its 384-channel transformer reads the masked source's latents and the mask,
  packed, beside the latents at every step. Samplers: gpu_workers.samplers' FLOW_SAMPLERS,
  with the request's shift if it has one.
- FLUX.1 Depth and Canny [dev] (FluxControlPipeline; txt2img only): their 128-channel
  transformer reads the control image's VAE latents, packed, beside the latents at every
  step; the request's ControlRef names no ControlNet (the model is its own).
- ControlNet, after FluxControlNetPipeline (and its Img2Img and Inpaint siblings: every
  mode) and StableDiffusion3ControlNetPipeline (txt2img; diffusers has no SD 3.x img2img one):
  the batch's FluxControlNetModel / SD3ControlNetModel reads each row's control image through
  the VAE (FLUX.1: packed; XLabs' hint-block ControlNets the pixels), its residuals scaled
  per row by the row's conditioning scale inside its guidance start..end.
- IP-Adapter, every mode, after the pipelines' ip_adapter_image (gpu_workers.ip_adapters),
  at the batch's scale, each row's image encoded alone. FLUX.1: the batch's XLabs-layout
  adapter in the transformer's double-stream blocks; the negative image embeds the
  pipeline makes serve its true CFG only, which the studio doesn't run. SD 3.x: an
  InstantX-layout adapter in every joint attention layer, its resampler reading each row's
  SigLIP embeds at the row's timestep; with CFG the unconditional row's embeds are zeros.

Prompts are encoded by the pipeline's own encode_prompt, as written: A1111's emphasis is
not read for these families yet, and prompt editing or alternation is refused. A T5 prompt
longer than the family's limit is refused, never cut short.
"""

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
from diffusers import FluxControlNetModel, SD3ControlNetModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from diffusers.pipelines.flux.pipeline_flux_img2img import retrieve_latents
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from gpu_workers.batch_invariance import each_request_alone
from gpu_workers.control import control_image_from
from gpu_workers.denoise import (
    bucket_calls,
    buckets_up_to,
    padded_rows,
    requests_in_call,
    rows_of,
    varied_noise,
)
from gpu_workers.ip_adapters import LoadedIPAdapter, image_embeds, ip_adapter_active
from gpu_workers.pipelines import FAMILY_NAMES, FLUX, SD, SD3, SDXL, pipeline_family
from gpu_workers.prompt_syntax import prompt_schedule
from gpu_workers.prompt_syntax import t5_token_limit as prompt_t5_token_limit
from gpu_workers.requests import ControlRef, GenerationFailed, GenerationRequest
from gpu_workers.samplers import FLOW_SAMPLERS, fresh_flow_scheduler

# The transformer's input channels for FLUX.1's 16 latent channels packed 2×2 (the other
# FLUX.1 tools take more) and for SD 3.x's 16 (SD 3.x inpainting variants 33).
TRANSFORMER_CHANNELS = {FLUX: 64, SD3: 16}
# FLUX.1 Fill's: the latents (64), the masked source's latents (64) and the mask packed 8×8
# and 2×2 (256), all packed.
FLUX_FILL_CHANNELS = 384
# FLUX.1 Depth's and Canny's [dev] ("structural conditioning"): the latents (64) and the
# control image's latents (64), both packed.
FLUX_CONTROL_CHANNELS = 128
# Each family's ControlNet class (FluxControlNetPipeline's, StableDiffusion3ControlNetPipeline's).
FAMILY_CONTROLNETS = {FLUX: FluxControlNetModel, SD3: SD3ControlNetModel}


def t5_token_limit(pipe) -> int:
    """The longest prompt T5 reads for the loaded model (gpu_workers.prompt_syntax)."""
    return prompt_t5_token_limit(
        flux=pipeline_family(pipe) == FLUX,
        guidance_embeds=bool(pipe.transformer.config.get("guidance_embeds")),
    )


def batch_refusal(pipe, request: GenerationRequest) -> str | None:
    """Why a batch of requests like `request` (BatchKey: IP-Adapter, embeddings) can't run
    on this flow model yet, or None. Every mode, LoRAs (gpu_workers.loras), ControlNet
    (SD 3.x: for txt2img) and IP-Adapter run; FLUX.1 Fill inpaints (and outpaints), FLUX.1
    Depth and Canny make images from text and a control image."""
    family = pipeline_family(pipe)
    channels = pipe.transformer.config.in_channels
    fill = is_flux_fill(pipe)
    flux_control = is_flux_control(pipe)
    if channels != TRANSFORMER_CHANNELS[family] and not (fill or flux_control):
        return (
            f"This {FAMILY_NAMES[family]} model's transformer takes {channels} input channels, "
            f"not {TRANSFORMER_CHANNELS[family]}: a variant (such as an SD 3.x inpainting "
            "model) the studio doesn't run yet."
        )
    if fill and request.ip_adapter:  # FluxFillPipeline takes no image prompt
        return "FLUX.1 Fill models don't support IP-Adapter in the studio."
    if flux_control and request.ip_adapter:  # nor does FluxControlPipeline
        return "FLUX.1 Depth and Canny models don't support IP-Adapter in the studio."
    family = FAMILY_NAMES[family]
    unsupported = {
        # diffusers has no SD 3.x ControlNet img2img pipeline to follow.
        "ControlNet beyond txt2img": (
            request.control and request.mode != "txt2img" and family == FAMILY_NAMES[SD3]
        ),
        "textual-inversion embeddings": request.embeddings,
    }
    for feature, used in unsupported.items():
        if used:
            return f"{family} models don't support {feature} in the studio yet."
    return None


def is_flux_fill(pipe) -> bool:
    return (
        pipeline_family(pipe) == FLUX and pipe.transformer.config.in_channels == FLUX_FILL_CHANNELS
    )


def is_flux_control(pipe) -> bool:
    """Whether the model is FLUX.1 Depth or Canny [dev] (a 128-channel transformer)."""
    return (
        pipeline_family(pipe) == FLUX
        and pipe.transformer.config.in_channels == FLUX_CONTROL_CHANNELS
    )


@dataclass(eq=False)
class FlowRow:
    """One request's own state in a FlowBatch; the engine reads `request`, `scheduler`,
    `step`, `done` and `denoised` as it does a denoise.Row's."""

    request: GenerationRequest
    scheduler: SchedulerMixin
    timesteps: torch.Tensor
    cfg: bool
    guidance_scale: float
    latents: torch.Tensor  # FLUX.1: (1, tokens, 64), packed; SD 3.x: (1, 16, h, w)
    prompt_embeds: torch.Tensor  # its transformer rows': unconditional first with CFG
    pooled_embeds: torch.Tensor
    guidance: torch.Tensor | None  # FLUX.1 [dev]: the distilled guidance value, (1,)
    num_warmup_steps: int
    inpaint: "FlowInpaint | None" = None
    control: "FlowControl | None" = None
    # IP-Adapter: the row's image embedding as its pipeline prepares it: FLUX.1 (1, 1,
    # width); SD 3.x (rows, tokens, width), zeros first with CFG.
    ip_image_embeds: torch.Tensor | None = None
    # FLUX.1 Fill: the masked source's latents and the mask, packed, (1, tokens, 320).
    fill_condition: torch.Tensor | None = None
    # FLUX.1 Depth and Canny: the control image's latents, packed, (1, tokens, 64).
    control_condition: torch.Tensor | None = None
    calls: int = 0
    step: int = 0
    # After a step: the clean latents it predicts, (1, 16, h, w), for the step's preview.
    denoised: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.calls == len(self.timesteps)

    @property
    def timestep(self) -> torch.Tensor:
        return self.timesteps[self.calls]

    @property
    def model_rows(self) -> int:
        return 2 if self.cfg else 1


@dataclass
class FlowInpaint:
    """What an inpainting row blends back in after each step, outside its mask, as
    FluxInpaintPipeline and StableDiffusion3InpaintPipeline do (FLUX.1: packed)."""

    image_latents: torch.Tensor  # the source image's
    noise: torch.Tensor  # the row's starting noise, to noise the source to the next step
    mask: torch.Tensor  # 1 where the image is redrawn


@dataclass
class FlowControl:
    """A ControlNet row's conditioning, as FluxControlNetPipeline and
    StableDiffusion3ControlNetPipeline prepare it."""

    images: torch.Tensor  # its transformer rows': VAE latents (FLUX.1 InstantX: packed)
    scales: list[float]  # per step: the scale, or 0 outside guidance start..end


def controlnet_family_name(controlnet: torch.nn.Module) -> str:
    """The family a ControlNet is made for, for messages."""
    for family, controlnet_class in FAMILY_CONTROLNETS.items():
        if isinstance(controlnet, controlnet_class):
            return FAMILY_NAMES[family]
    sdxl = controlnet.config.get("addition_embed_type") == "text_time"
    return FAMILY_NAMES[SDXL if sdxl else SD]


def compiled_in_place(module: torch.nn.Module) -> bool:
    """Whether `module` was compiled by nn.Module.compile (WorkerConfig.compile)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def noised(scheduler: SchedulerMixin, sample, timestep, noise):
    """`sample` noised to `timestep` along the flow: the pipelines' scale_noise, or, for
    DPM++ 2M's scheduler, its add_noise, which is the same on flow sigmas."""
    if hasattr(scheduler, "scale_noise"):
        return scheduler.scale_noise(sample, timestep, noise)
    return scheduler.add_noise(sample, noise, timestep)


class FlowBatch:
    """FLUX.1 or SD 3.x requests denoised together, each row at its own step (see the
    module's docstring); rows join (`add`) and leave (`remove`) between steps."""

    def __init__(
        self,
        pipe,
        device: torch.device,
        controlnet: torch.nn.Module | None = None,
        ip_adapter: LoadedIPAdapter | None = None,
        ip_adapter_scale: float = 1.0,
        *,
        buckets: tuple[int, ...] = (),
        cuda_graphs: bool = False,
    ):
        """`buckets` and `cuda_graphs` as RunningBatch's: each transformer call is padded
        to the next bucket with copies of its last row (split into calls of the largest
        where it has more rows), so a compiled transformer sees no other batch size."""
        self.pipe = pipe
        self.device = device
        self.buckets = buckets
        self.cuda_graphs = cuda_graphs
        self._transformer_compiled = compiled_in_place(pipe.transformer)
        # The batch's FluxControlNetModel or SD3ControlNetModel (BatchKey.control), or None.
        self.controlnet = controlnet
        # The batch's IP-Adapter and scale (BatchKey.ip_adapter), or None.
        self.ip_adapter = ip_adapter
        self.ip_adapter_scale = ip_adapter_scale
        self.family = pipeline_family(pipe)
        self.fill = is_flux_fill(pipe)
        self.flux_control = is_flux_control(pipe)
        self.rows: list[FlowRow] = []
        self._text_ids = None  # FLUX.1: T5's token ids, all zeros, one set for every row
        self._image_ids = None
        self._projection = None  # the adapter's image projection, while it is in
        self._contexts = ExitStack()

    def __enter__(self) -> "FlowBatch":
        if self.ip_adapter is not None:
            adapter = ip_adapter_active(
                self.pipe.transformer, self.ip_adapter, self.ip_adapter_scale
            )
            self._projection = self._contexts.enter_context(adapter)
        return self

    def __exit__(self, *exc_info) -> None:
        self._contexts.close()
        # With CPU offload: every model back to the CPU, as the pipeline does after each call.
        self.pipe.maybe_free_model_hooks()

    @torch.no_grad()
    def add(self, request: GenerationRequest) -> FlowRow:
        """Start `request` as it starts alone and join it to the batch at the next step."""
        row = self._start(request)
        self.rows.append(row)
        return row

    def remove(self, row: FlowRow) -> None:
        self.rows.remove(row)

    def _refuse_row(self, request: GenerationRequest) -> None:
        family = FAMILY_NAMES[self.family]
        if request.sampler is not None and request.sampler not in FLOW_SAMPLERS:
            raise GenerationFailed(
                f"{family} models run the flow-matching samplers "
                f"{', '.join(FLOW_SAMPLERS)} in the studio, not {request.sampler}."
            )
        if request.shift is not None and not request.shift > 0:
            raise GenerationFailed(f"The shift must be above 0, not {request.shift}.")
        if request.clip_skip != 1:
            raise GenerationFailed(f"{family} models don't support clip skip in the studio.")
        multiple = self.pipe.vae_scale_factor * 2
        if request.width % multiple or request.height % multiple:
            raise GenerationFailed(
                f"{family} models make images whose sides are multiples of {multiple}, not "
                f"{request.width}x{request.height}."
            )
        prompts = {"prompt": request.prompt, "negative prompt": request.negative_prompt}
        if self.family == FLUX:  # its pipeline reads no negative prompt
            del prompts["negative prompt"]
        for name, prompt in prompts.items():
            if len(prompt_schedule(prompt, request.steps)) > 1:
                raise GenerationFailed(
                    f"{family} models don't support prompt editing or alternation ([a:b:0.5], "
                    f"[a|b]) in the studio yet: the {name} uses it."
                )
        if self.flux_control:
            self._check_flux_control(request)
        elif request.control is not None:
            self._check_controlnet(request)
        if self.fill and request.mode != "inpaint":
            raise GenerationFailed(
                "FLUX.1 Fill models only inpaint and outpaint: give a source image and a mask, "
                "or choose another FLUX.1 model."
            )
        if request.ip_adapter is not None and self.ip_adapter is None:
            raise GenerationFailed("An IP-Adapter request needs its IP-Adapter loaded.")
        limit = t5_token_limit(self.pipe)
        tokenizer = self.pipe.tokenizer_2 if self.family == FLUX else self.pipe.tokenizer_3
        for name, prompt in prompts.items():
            tokens = len(tokenizer(prompt).input_ids)
            if tokens > limit:
                raise GenerationFailed(
                    f"The {name} is {tokens} T5 tokens long; {family} models read at most "
                    f"{limit}. Shorten it: the studio never cuts a prompt short."
                )

    def _check_flux_control(self, request: GenerationRequest) -> None:
        """FLUX.1 Depth and Canny make images from text steered by a control image (a depth
        map, edges) they read themselves: FluxControlPipeline's txt2img."""
        if request.mode != "txt2img":
            raise GenerationFailed(
                "FLUX.1 Depth and Canny models only make images from text and a control "
                f"image, not {request.mode}: leave out the source image, or choose another "
                "FLUX.1 model."
            )
        if request.control is None:
            raise GenerationFailed(
                "FLUX.1 Depth and Canny models need a control image (a depth map or edges) "
                "to follow: give one."
            )
        if request.control.model_source:
            controlnet = request.control.name or request.control.model_source
            raise GenerationFailed(
                "FLUX.1 Depth and Canny models read their control image themselves: give the "
                f"image without a ControlNet model (not {controlnet})."
            )

    def _check_controlnet(self, request: GenerationRequest) -> None:
        """Refuse a ControlNet that is missing or made for another family or model size."""
        controlnet, family = self.controlnet, FAMILY_NAMES[self.family]
        name = request.control.name or request.control.model_source
        if controlnet is None:
            raise GenerationFailed("A ControlNet request needs its ControlNet model loaded.")
        if not isinstance(controlnet, FAMILY_CONTROLNETS[self.family]):
            raise GenerationFailed(
                f"The ControlNet {name} is a {controlnet_family_name(controlnet)} ControlNet; "
                f"this model is {family}. Choose a {family} ControlNet."
            )
        transformer = self.pipe.transformer.config
        widths = [("in_channels", transformer.in_channels)]
        if controlnet.config.get("joint_attention_dim") is not None:
            widths.append(("joint_attention_dim", transformer.joint_attention_dim))
        for setting, width in widths:
            if controlnet.config[setting] != width:
                raise GenerationFailed(
                    f"The ControlNet {name} does not fit this {family} model: its {setting} is "
                    f"{controlnet.config[setting]}, the model's {width}."
                )

    def _start(self, request: GenerationRequest) -> FlowRow:
        self._refuse_row(request)
        pipe, device = self.pipe, self.device
        generator = [torch.Generator(device=device).manual_seed(request.seed)]
        scheduler = fresh_flow_scheduler(pipe, request.sampler, request.shift)
        limit = t5_token_limit(pipe)
        guidance = None
        if self.family == FLUX:
            cfg = False
            prompt_embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=request.prompt, prompt_2=None, device=device, max_sequence_length=limit
            )
            self._text_ids = text_ids
            if pipe.transformer.config.guidance_embeds:
                guidance = torch.full(
                    [1], request.guidance_scale, device=device, dtype=torch.float32
                )
        else:
            cfg = request.guidance_scale > 1
            positive, negative, pooled, negative_pooled = pipe.encode_prompt(
                prompt=request.prompt,
                prompt_2=None,
                prompt_3=None,
                negative_prompt=request.negative_prompt,
                do_classifier_free_guidance=cfg,
                device=device,
                max_sequence_length=limit,
            )
            prompt_embeds = torch.cat([negative, positive]) if cfg else positive
            pooled = torch.cat([negative_pooled, pooled]) if cfg else pooled
        timesteps = self._timesteps(scheduler, request)
        control = control_condition = None
        # Before the noise: FLUX.1's pipelines sample the control image's latents with the
        # request's generator first.
        if self.flux_control:
            control_condition = self._control_condition(request, generator)
        elif request.control is not None:
            control = self._control(request, generator, cfg, len(timesteps))
        latents, inpaint, fill_condition = self._latents(
            request, scheduler, timesteps, generator, prompt_embeds.dtype
        )
        ip_image_embeds = None
        if request.ip_adapter is not None:
            embeds = image_embeds(
                self.ip_adapter,
                [request.ip_adapter.image],
                self._projection,
                [0] if cfg else [],
                device,
            )
            ip_image_embeds = embeds if self.family == SD3 else embeds[0]
        steps = request.denoising_steps()
        return FlowRow(
            request=request,
            scheduler=scheduler,
            timesteps=timesteps,
            cfg=cfg,
            guidance_scale=request.guidance_scale,
            latents=latents,
            prompt_embeds=prompt_embeds,
            pooled_embeds=pooled,
            guidance=guidance,
            num_warmup_steps=max(len(timesteps) - steps * scheduler.order, 0),
            inpaint=inpaint,
            control=control,
            ip_image_embeds=ip_image_embeds,
            fill_condition=fill_condition,
            control_condition=control_condition,
        )

    def _control_condition(self, request, generator) -> torch.Tensor:
        """What FLUX.1 Depth's or Canny's transformer reads beside the row's latents: the
        control image (with the ControlRef's preprocessor) through the VAE, sampled with the
        row's generator, shifted, scaled and packed, as FluxControlPipeline prepares it."""
        pipe, vae = self.pipe, self.pipe.vae
        image = self._control_pixels(request).to(device=self.device, dtype=vae.dtype)
        latents = retrieve_latents(vae.encode(image), generator=generator[0])
        latents = (latents - vae.config.shift_factor) * vae.config.scaling_factor
        channels, height, width = latents.shape[1:]
        return pipe._pack_latents(latents, 1, channels, height, width)

    def _control_pixels(self, request) -> torch.Tensor:
        """The request's control image (made with its ControlRef's preprocessor: canny
        edges, or the image as it is) as the pipelines preprocess it, on the CPU."""
        control = request.control
        conditioning = control_image_from(
            control.image,
            request.width,
            request.height,
            module=control.module,
            low_threshold=control.low_threshold,
            high_threshold=control.high_threshold,
        )
        image = self.pipe.image_processor.preprocess(
            conditioning, height=request.height, width=request.width
        )
        # The pipelines' repeat_interleave leaves it contiguous, whatever layout it had.
        return image.contiguous()

    def _control(self, request, generator, cfg: bool, steps: int) -> FlowControl:
        """The row's control image (made from the request's image: canny edges) through the
        VAE and each step's scale, as the family's ControlNet pipeline prepares them."""
        pipe, device, vae = self.pipe, self.device, self.pipe.vae
        control = request.control
        image = self._control_pixels(request)
        if self.family == FLUX:
            image = image.to(device=device, dtype=vae.dtype)
            if self.controlnet.input_hint_block is None:  # InstantX: packed VAE latents
                image = retrieve_latents(vae.encode(image), generator=generator[0])
                image = (image - vae.config.shift_factor) * vae.config.scaling_factor
                channels, height, width = image.shape[1:]
                image = pipe._pack_latents(image, 1, channels, height, width)
            # XLabs' (a hint block) read the pixels themselves.
        else:
            image = image.to(device=device, dtype=pipe.transformer.dtype)
            image = torch.cat([image] * 2) if cfg else image
            # StableDiffusion3ControlNetPipeline samples these latents from torch's global
            # generator; the studio's row samples them from one seeded with the request's
            # seed, which is what the pipeline draws after torch.manual_seed(seed).
            control_generator = torch.Generator(device=device).manual_seed(request.seed)
            # Both CFG rows in one VAE call, as the pipeline encodes them: the worker's VAE
            # slicing (which saves memory on large batches) would encode them one by one,
            # which rounds otherwise on a CPU.
            slicing, vae.use_slicing = vae.use_slicing, False
            try:
                image = vae.encode(image).latent_dist.sample(generator=control_generator)
            finally:
                vae.use_slicing = slicing
            # InstantX's SD 3.x ControlNets (zero pooled prompt) were trained without the shift.
            shift = 0 if self.controlnet.config.force_zeros_for_pooled_projection else None
            shift = vae.config.shift_factor if shift is None else shift
            image = (image - shift) * vae.config.scaling_factor
        # The pipelines' controlnet_keep.
        scales = [
            control.conditioning_scale
            * (
                1.0
                - float(
                    i / steps < control.guidance_start or (i + 1) / steps > control.guidance_end
                )
            )
            for i in range(steps)
        ]
        return FlowControl(images=image, scales=scales)

    def _timesteps(self, scheduler: SchedulerMixin, request: GenerationRequest) -> torch.Tensor:
        """The row's timesteps, as its pipeline sets them (FLUX.1: its sigmas and the shift
        for the image's size; SD 3.x: the scheduler's, shifted by size only where the config
        asks); img2img and inpaint keep the last `request.denoising_steps()` of them."""
        pipe, config = self.pipe, scheduler.config
        # A request's own shift replaces the size-dependent one (fresh_flow_scheduler).
        dynamic = config.get("use_dynamic_shifting", False)
        if self.family == FLUX:
            patch, max_shift = 2, 1.15
            # Flow sigmas are the scheduler's own (DPM++ 2M); Euler takes the pipeline's.
            sigmas = np.linspace(1.0, 1 / request.steps, request.steps)
            if config.get("use_flow_sigmas", False):
                sigmas = None
        else:
            patch, max_shift = pipe.transformer.config.patch_size, 1.16
            sigmas = None
        kwargs = {}
        if dynamic:
            image_seq_len = (request.height // pipe.vae_scale_factor // patch) * (
                request.width // pipe.vae_scale_factor // patch
            )
            kwargs["mu"] = calculate_shift(
                image_seq_len,
                config.get("base_image_seq_len", 256),
                config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5),
                config.get("max_shift", max_shift),
            )
        timesteps, _ = retrieve_timesteps(
            scheduler, request.steps, self.device, sigmas=sigmas, **kwargs
        )
        if request.mode == "txt2img":
            if self.family == FLUX:
                scheduler.set_begin_index(0)
            return timesteps
        # The pipelines' get_timesteps, with the studio's count of the steps img2img runs
        # (gpu_workers.requests.img2img_steps, A1111's and the SD pipelines'): the flow
        # pipelines run one step more where steps × strength is not whole.
        t_start = (request.steps - request.denoising_steps()) * scheduler.order
        scheduler.set_begin_index(t_start)
        return timesteps[t_start:]

    def _latents(self, request, scheduler, timesteps, generator, dtype):
        """The row's starting latents (FLUX.1: packed) and, to inpaint, its FlowInpaint, or
        with FLUX.1 Fill its fill condition."""
        pipe, device = self.pipe, self.device
        flux = self.family == FLUX
        if flux:
            # Fill's and Depth's / Canny's transformers read more than the latents.
            channels = pipe.vae.config.latent_channels
            if not (self.fill or self.flux_control):
                channels = pipe.transformer.config.in_channels // 4
            height = 2 * (request.height // (pipe.vae_scale_factor * 2))
            width = 2 * (request.width // (pipe.vae_scale_factor * 2))
            self._image_ids = pipe._prepare_latent_image_ids(
                1, height // 2, width // 2, device, dtype
            )
        else:
            channels = pipe.transformer.config.in_channels
            height = request.height // pipe.vae_scale_factor
            width = request.width // pipe.vae_scale_factor
        shape = (1, channels, height, width)

        def packed(latents):
            return pipe._pack_latents(latents, 1, channels, height, width) if flux else latents

        if request.mode == "txt2img":
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            return packed(varied_noise(noise, [request], device)), None, None
        image = pipe.image_processor.preprocess(
            request.init_image, height=request.height, width=request.width
        ).to(dtype=torch.float32)
        # The source's latents, sampled with the row's generator before its noise is drawn.
        image_latents = retrieve_latents(
            pipe.vae.encode(image.to(device=device, dtype=dtype)), generator=generator[0]
        )
        vae_config = pipe.vae.config
        image_latents = (image_latents - vae_config.shift_factor) * vae_config.scaling_factor
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        latents = noised(scheduler, image_latents, timesteps[:1], noise)
        if request.mode == "img2img":
            return packed(latents), None, None
        if self.fill:
            return packed(latents), None, self._fill_condition(request, image, generator, dtype)
        if not flux:
            # StableDiffusion3InpaintPipeline's repeat() leaves the source's latents
            # contiguous, whatever layout the VAE gave; the blend's layout follows them, and
            # the VAE's convolutions pick their kernels by layout.
            image_latents = image_latents.contiguous()
            if request.strength == 1.0:
                latents = noise  # the pipeline starts from the noise itself
        mask_processor = VaeImageProcessor(
            vae_scale_factor=pipe.image_processor.config.vae_scale_factor,
            do_normalize=False,
            do_binarize=True,
            do_convert_grayscale=True,
        )
        mask = mask_processor.preprocess(
            request.mask_image, height=request.height, width=request.width
        )
        mask = torch.nn.functional.interpolate(mask, size=(height, width))
        mask = mask.to(device=device, dtype=dtype)
        if flux:
            mask = mask.repeat(1, channels, 1, 1)
        # The pipelines also encode the masked image, which plain (16 / 64-channel)
        # transformers never see; it draws from the generator only after everything the
        # row uses, so it is left out.
        inpaint = FlowInpaint(
            image_latents=packed(image_latents), noise=packed(noise), mask=packed(mask)
        )
        return packed(latents), inpaint, None

    def _fill_condition(self, request, image, generator, dtype) -> torch.Tensor:
        """What FLUX.1 Fill's transformer reads beside the row's latents: the latents of the
        source with the mask blanked out (drawn from the row's generator after its noise)
        and the mask, each packed, as FluxFillPipeline.prepare_mask_latents makes them."""
        pipe, device, vae = self.pipe, self.device, self.pipe.vae
        scale = pipe.vae_scale_factor
        mask_processor = VaeImageProcessor(
            vae_scale_factor=scale * 2,
            vae_latent_channels=vae.config.latent_channels,
            do_normalize=False,
            do_binarize=True,
            do_convert_grayscale=True,
        )
        mask = mask_processor.preprocess(
            request.mask_image, height=request.height, width=request.width
        )
        masked_image = (image * (1 - mask)).to(device=device, dtype=dtype)
        height = 2 * (image.shape[-2] // (scale * 2))
        width = 2 * (image.shape[-1] // (scale * 2))
        channels = vae.config.latent_channels
        masked_latents = retrieve_latents(vae.encode(masked_image), generator=generator)
        masked_latents = (masked_latents - vae.config.shift_factor) * vae.config.scaling_factor
        masked_latents = masked_latents.to(device=device, dtype=dtype)
        masked_latents = pipe._pack_latents(masked_latents, 1, channels, height, width)
        # The mask's pixels under each latent become that latent's 8×8 channels.
        mask = mask[:, 0, :, :].view(1, height, scale, width, scale)
        mask = mask.permute(0, 2, 4, 1, 3).reshape(1, scale * scale, height, width)
        mask = pipe._pack_latents(mask, 1, scale * scale, height, width)
        mask = mask.to(device=device, dtype=dtype)
        return torch.cat((masked_latents, mask), dim=-1)

    @torch.no_grad()
    def step(self) -> list[FlowRow]:
        """One transformer call for every row (with buckets: one per bucket-sized part),
        each row's scheduler stepped on its rows; returns the rows whose step ended."""
        rows = self.rows
        # Transformer rows: each request's rows together (its unconditional one, then its
        # conditional one with CFG): for a request alone exactly the pipeline's batch.
        groups, first = [], 0
        for row in rows:
            groups.append(list(range(first, first + row.model_rows)))
            first += row.model_rows
        latents = [torch.cat([row.latents] * 2) if row.cfg else row.latents for row in rows]
        if self.fill:
            latents = [torch.cat((row.latents, row.fill_condition), dim=2) for row in rows]
        if self.flux_control:
            latents = [torch.cat((row.latents, row.control_condition), dim=2) for row in rows]
        timesteps = torch.cat([row.timestep.expand(row.model_rows) for row in rows])
        # One request: its latents as the pipeline passes them (a copy would be laid out anew).
        hidden_states = latents[0] if len(rows) == 1 else torch.cat(latents)
        # The inputs with a value per transformer row; FLUX.1's ids are every row's.
        inputs = {
            "hidden_states": hidden_states,
            "encoder_hidden_states": torch.cat([row.prompt_embeds for row in rows]),
            "pooled_projections": torch.cat([row.pooled_embeds for row in rows]),
        }
        if self.family == FLUX:
            inputs["timestep"] = timesteps.to(hidden_states.dtype) / 1000
            inputs["guidance"] = None
            if rows[0].guidance is not None:
                inputs["guidance"] = torch.cat([row.guidance for row in rows])
        else:
            # With buckets, in float32 whatever the sampler, as SD's (one graph per bucket);
            # the transformer embeds them in float32 anyway.
            inputs["timestep"] = timesteps.float() if self.buckets else timesteps
        if rows[0].ip_image_embeds is not None and self.family == FLUX:  # all rows have one
            embeds = torch.cat([row.ip_image_embeds for row in rows])
            inputs["joint_attention_kwargs"] = {"ip_adapter_image_embeds": [embeds]}
        elif rows[0].ip_image_embeds is not None:
            inputs["joint_attention_kwargs"] = self._sd3_image_prompt(rows, groups, timesteps)
        calls = [list(range(len(timesteps)))]  # every transformer row
        if self.buckets:
            calls = bucket_calls(groups, calls[0], self.buckets[-1])
        predictions = [self._transformer_call(rows, groups, inputs, call) for call in calls]
        prediction = predictions[0] if len(predictions) == 1 else torch.cat(predictions)
        ended = []
        for row, group in zip(rows, groups, strict=True):
            noise_pred = prediction[group[0] : group[-1] + 1]
            if row.cfg:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + row.guidance_scale * (
                    noise_pred_text - noise_pred_uncond
                )
            if self._step_row(row, noise_pred):
                ended.append(row)
        return ended

    def _transformer_call(self, rows, groups, inputs: dict, call: list[int]) -> torch.Tensor:
        """The transformer's prediction for the transformer rows `call` (consecutive) of the
        per-row `inputs`, padded to their bucket with copies of the last row."""
        indices, padding = padded_rows(call, self.buckets)
        if len(call) == len(inputs["hidden_states"]) and not padding:
            indices = None  # every row as it is (indexing would copy them)
        call_inputs = rows_of(inputs, indices)
        if self.family == FLUX:
            call_inputs = {**call_inputs, "txt_ids": self._text_ids, "img_ids": self._image_ids}
        # The few-row products (timestep, guidance and pooled-prompt embeddings, the blocks'
        # modulations) on each request's rows alone, the padding as a request of its own;
        # attention over hundreds of tokens rounds alike in any batch.
        alone = each_request_alone(requests_in_call(groups, call, padding), self.device)
        if rows[0].control is not None:
            with alone:
                call_inputs.update(self._controlnet_residuals(rows, call_inputs, indices))
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        # A compiled transformer runs the kernels compiled for the call's shape whatever the
        # context (gpu_workers.batch_invariance), and torch.compile can't trace its
        # attention through it (Tensor.unflatten).
        with nullcontext() if self._transformer_compiled else alone:
            prediction = self.pipe.transformer(**call_inputs, return_dict=False)[0]
        if self.cuda_graphs:
            prediction = prediction.clone()  # the next replay overwrites it
        return prediction[: len(call)] if padding else prediction

    def _sd3_image_prompt(self, rows: list[FlowRow], groups, timesteps) -> dict:
        """The SD 3.x adapter's image tokens and timestep embedding, as the transformer
        makes them from `ip_adapter_image_embeds` (its image_proj, at each row's
        timestep), but on each request's rows alone: the resampler's attention over a few
        tokens rounds by batch size on the CPU."""
        tokens, embeddings = [], []
        for row, group in zip(rows, groups, strict=True):
            row_tokens, row_embedding = self._projection(
                row.ip_image_embeds, timesteps[group[0] : group[-1] + 1]
            )
            tokens.append(row_tokens)
            embeddings.append(row_embedding)
        return {"ip_hidden_states": torch.cat(tokens), "temb": torch.cat(embeddings)}

    def _controlnet_residuals(self, rows: list[FlowRow], inputs: dict, indices) -> dict:
        """The ControlNet's residuals for the transformer call `inputs` on the batch's
        transformer rows `indices` (None: all), each row's at its own step's scale, as the
        family's ControlNet pipeline passes them."""
        controlnet = self.controlnet
        scales = [row.control.scales[row.calls] for row in rows for _ in range(row.model_rows)]
        if indices is not None:
            scales = [scales[index] for index in indices]
        scale = scales[0]
        if len(set(scales)) > 1:
            # Rows at different steps of their spans: a scale per transformer row (the
            # residuals' dtype, as the float one multiplies them).
            scale = torch.tensor(scales, device=self.device, dtype=controlnet.dtype).view(-1, 1, 1)
        images = rows_of(torch.cat([row.control.images for row in rows]), indices)
        if self.family == FLUX:
            guidance = None
            if controlnet.config.guidance_embeds:  # FLUX.1: one transformer row per request
                guidance = torch.cat(
                    [torch.full([1], row.guidance_scale, device=self.device) for row in rows]
                )
                guidance = rows_of(guidance, indices)
            blocks, single_blocks = controlnet(
                hidden_states=inputs["hidden_states"],
                controlnet_cond=images,
                controlnet_mode=None,
                conditioning_scale=scale,
                timestep=inputs["timestep"],
                guidance=guidance,
                pooled_projections=inputs["pooled_projections"],
                encoder_hidden_states=inputs["encoder_hidden_states"],
                txt_ids=inputs["txt_ids"],
                img_ids=inputs["img_ids"],
                return_dict=False,
            )
            return {
                "controlnet_block_samples": blocks,
                "controlnet_single_block_samples": single_blocks,
                # XLabs' ControlNets (a hint block) repeat their few blocks over the model's.
                "controlnet_blocks_repeat": controlnet.input_hint_block is not None,
            }
        pooled = inputs["pooled_projections"]
        if controlnet.config.force_zeros_for_pooled_projection:
            pooled = torch.zeros_like(pooled)
        text = None  # SD 3.5's own ControlNets read no prompt
        if controlnet.config.joint_attention_dim is not None:
            text = inputs["encoder_hidden_states"]
        blocks = controlnet(
            hidden_states=inputs["hidden_states"],
            timestep=inputs["timestep"],
            encoder_hidden_states=text,
            pooled_projections=pooled,
            controlnet_cond=images,
            conditioning_scale=scale,
            return_dict=False,
        )[0]
        return {"block_controlnet_hidden_states": blocks}

    def _step_row(self, row: FlowRow, noise_pred: torch.Tensor) -> bool:
        """Step `row` on its own scheduler; whether that ended one of its steps."""
        scheduler, before = row.scheduler, row.latents
        latents = scheduler.step(noise_pred, row.timestep, before, return_dict=False)[0]
        inpaint = row.inpaint
        if inpaint is not None:
            # Outside the mask, the source noised to where the next step starts.
            source = inpaint.image_latents
            if row.calls < len(row.timesteps) - 1:
                next_timestep = torch.tensor([row.timesteps[row.calls + 1]])
                source = noised(scheduler, source, next_timestep, inpaint.noise)
            latents = (1 - inpaint.mask) * source + inpaint.mask * latents
        row.latents = latents
        row.calls += 1
        ended = row.done or (row.calls > row.num_warmup_steps and row.calls % scheduler.order == 0)
        if ended:
            row.step += 1
            # The clean latents the prediction points to: a flow model predicts the velocity
            # from the image to the noise, and the step just taken was at sigma.
            sigma = scheduler.sigmas[scheduler.step_index - 1].to(before.device, before.dtype)
            denoised = before - sigma * noise_pred
            if self.family == FLUX:
                denoised = self.pipe._unpack_latents(
                    denoised, row.request.height, row.request.width, self.pipe.vae_scale_factor
                )
            row.denoised = denoised
        return ended

    @torch.no_grad()
    def decode(self, rows: list[FlowRow]) -> list[Image.Image]:
        """The images of `rows` (done denoising), in order; each decoded alone, as the
        pipeline decodes a request (the VAE's attention rounds by batch size on a CPU)."""
        pipe, images = self.pipe, []
        vae = pipe.vae
        for row in rows:
            latents = row.latents
            if self.family == FLUX:
                latents = pipe._unpack_latents(
                    latents, row.request.height, row.request.width, pipe.vae_scale_factor
                )
            latents = (latents / vae.config.scaling_factor) + vae.config.shift_factor
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            image = vae.decode(latents, return_dict=False)[0]
            images += pipe.image_processor.postprocess(image, output_type="pil")
        return images


@torch.no_grad()
def warm_up_flow_buckets(
    pipe, device: torch.device, buckets: tuple[int, ...], *, max_requests: int, cuda_graphs: bool
) -> dict[str, list[int]]:
    """warm_up_buckets for FLUX.1 and SD 3.x: one transformer call for every bucket up to
    the one that holds `max_requests` requests' transformer rows (SD 3.x's CFG: two each)
    and one VAE decode of one image (FlowBatch.decode's), made by a FlowBatch of a
    one-step request at the model's default size padded to each bucket: shaped exactly as
    in a job. Other sizes compile on their first batch. Returns the batch sizes run."""
    rows_per_request = 2 if pipeline_family(pipe) == SD3 else 1
    sizes = buckets_up_to(max_requests * rows_per_request, buckets)
    side = pipe.default_sample_size * pipe.vae_scale_factor
    # At guidance 1 SD 3.x runs no CFG: one transformer row, whatever the bucket.
    request = GenerationRequest(
        model_source=pipe.name_or_path,
        prompt="",
        negative_prompt="",
        steps=1,
        guidance_scale=1.0,
        width=side,
        height=side,
        seed=0,
    )
    if is_flux_fill(pipe):  # it only inpaints
        canvas = Image.new("RGB", (side, side))
        request = replace(request, init_image=canvas, mask_image=canvas.convert("L"))
    if is_flux_control(pipe):  # it follows a control image
        canvas = Image.new("RGB", (side, side))
        request = replace(request, control=ControlRef(model_source="", image=canvas, module="none"))
    if batch_refusal(pipe, request) is not None:
        return {"transformer": [], "vae_decoder": []}  # its jobs are refused
    for size in sizes:
        with FlowBatch(pipe, device, buckets=(size,), cuda_graphs=cuda_graphs) as batch:
            row = batch.add(request)
            batch.step()
            if size == sizes[0]:
                batch.decode([row])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"transformer": sizes, "vae_decoder": [1]}
