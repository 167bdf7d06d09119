"""A running batch of txt2img, img2img or inpaint requests (RunningBatch), written out after
StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline and
their SDXL counterparts' __call__ (diffusers 0.42).

The pipelines take one guidance scale, one seed and one schedule per call. A batch of
independent requests needs a guidance scale, a noise generator and a scheduler per row, and
rows that join and leave between steps, so the loop is spelled out here; the rest follows the
pipelines line for line, so that a request alone gets the pipeline's image.
Prompts are read in A1111's prompt language (gpu_workers.prompt_encoding): one without its
syntax that fits 75 tokens conditions the UNet exactly as the pipelines' encode_prompt does.
"""

import inspect
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
    retrieve_latents,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from gpu_workers.batch_invariance import each_request_alone
from gpu_workers.control import control_image_from
from gpu_workers.embeddings import embeddings_loaded
from gpu_workers.ip_adapters import LoadedIPAdapter, image_embeds, ip_adapter_active
from gpu_workers.pipelines import SDXL, pipeline_family
from gpu_workers.prompt_encoding import Conditioning, ScheduledConditioning, batch_conditioning
from gpu_workers.requests import GenerationFailed, GenerationRequest
from gpu_workers.samplers import fresh_scheduler


def varied_noise(noise, requests, device):
    """A1111's variation seed: each row's noise moved towards the noise of its variation
    seed by its variation strength, along the sphere Gaussian noise lives on, so a small
    strength gives a close variation of the image its seed alone makes. Rows without a
    variation are returned untouched, and the rows' generators are not drawn from."""
    rows = [row for row, request in enumerate(requests) if request.variation_strength > 0]
    if not rows:
        return noise
    noise = noise.clone()
    for row in rows:
        request = requests[row]
        generator = torch.Generator(device=device).manual_seed(request.variation_seed)
        other = randn_tensor(
            noise[row : row + 1].shape, generator=generator, device=device, dtype=noise.dtype
        )[0]
        noise[row] = slerp(request.variation_strength, noise[row], other)
    return noise


def slerp(fraction, start, end):
    """Spherical interpolation between two tensors, `fraction` of the way to `end`."""
    start_flat, end_flat = start.flatten().float(), end.flatten().float()
    cosine = torch.dot(start_flat / start_flat.norm(), end_flat / end_flat.norm()).clamp(-1, 1)
    omega = torch.acos(cosine)
    if omega.abs() < 1e-4:  # (nearly) parallel: the straight line is the same path
        mixed = (1 - fraction) * start_flat + fraction * end_flat
    else:
        mixed = (
            torch.sin((1 - fraction) * omega) * start_flat + torch.sin(fraction * omega) * end_flat
        ) / torch.sin(omega)
    return mixed.reshape(start.shape).to(start.dtype)


def encoded_rows(pipe, images, generators):
    """VAE latents of each image, sampled with its row's generator, as the pipelines do."""
    latents = [
        retrieve_latents(pipe.vae.encode(images[row : row + 1]), generator=generators[row])
        for row in range(len(generators))
    ]
    return pipe.vae.config.scaling_factor * torch.cat(latents)


def sdxl_encoded_rows(pipe, images, generators, *, latents_stats=True):
    """encoded_rows as the SDXL pipelines encode: the VAE in float32 where its config says
    it overflows in float16 (force_upcast), and, for img2img (`latents_stats`), latents
    normalised by the VAE's latents_mean and latents_std where it has them."""
    vae, dtype = pipe.vae, images.dtype
    # A float32 VAE has nothing to upcast (and casting it would only log warnings).
    upcast = vae.config.force_upcast and vae.dtype != torch.float32
    if upcast:
        images = images.float()
        vae.to(dtype=torch.float32)
    latents = [
        retrieve_latents(vae.encode(images[row : row + 1]), generator=generators[row])
        for row in range(len(generators))
    ]
    if upcast:
        vae.to(dtype)
    latents = torch.cat(latents).to(dtype)
    mean, std = _latents_mean_and_std(vae, latents)
    if latents_stats and mean is not None:
        return (latents - mean) * vae.config.scaling_factor / std
    return vae.config.scaling_factor * latents


def _latents_mean_and_std(vae, like):
    """The VAE's per-channel latents mean and std (4, 1, 1), if its config has both."""
    mean = getattr(vae.config, "latents_mean", None)
    std = getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None, None
    return (
        torch.tensor(mean).view(1, 4, 1, 1).to(device=like.device, dtype=like.dtype),
        torch.tensor(std).view(1, 4, 1, 1).to(device=like.device, dtype=like.dtype),
    )


def sdxl_decoded(pipe, latents):
    """The SDXL pipelines' decode: in float32 where the VAE would overflow in float16, then
    the pipeline's watermark if it has one."""
    vae = pipe.vae
    needs_upcasting = vae.dtype == torch.float16 and vae.config.force_upcast
    if needs_upcasting:
        vae.to(dtype=torch.float32)
        latents = latents.to(torch.float32)
    mean, std = _latents_mean_and_std(vae, latents)
    if mean is not None:
        latents = latents * std / vae.config.scaling_factor + mean
    else:
        latents = latents / vae.config.scaling_factor
    image = vae.decode(latents, return_dict=False)[0]
    if needs_upcasting:
        vae.to(dtype=torch.float16)
    if getattr(pipe, "watermark", None) is not None:
        image = pipe.watermark.apply_watermark(image)
    return image


def vae_decoded(pipe, latents):
    """The pipelines' decode of denoised latents into images in [-1, 1]."""
    if pipeline_family(pipe) == SDXL:
        return sdxl_decoded(pipe, latents)
    return pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]


def sdxl_time_ids(pipe, requests, dtype, device):
    """Each row's size conditioning, as the pipelines make it for an image made whole at the
    requested size: original size and target size (height, width), crop (0, 0). The
    negative ones are the same."""
    height, width = requests[0].height, requests[0].width
    time_ids = [height, width, 0, 0, height, width]
    projection_dim = pipe.text_encoder_2.config.projection_dim
    passed = pipe.unet.config.addition_time_embed_dim * len(time_ids) + projection_dim
    expected = pipe.unet.add_embedding.linear_1.in_features
    if passed != expected:
        # An SDXL refiner (aesthetic score instead of the target size) or a broken config.
        raise GenerationFailed(
            f"This model's UNet expects added conditioning of length {expected}, but SDXL's "
            f"sizes and pooled prompt make {passed}: it is not an SDXL base model."
        )
    return torch.tensor([time_ids] * len(requests), dtype=dtype, device=device)


def noised_image_latents(pipe, requests, scheduler, first_timestep, generators, device, dtype):
    """img2img's starting point: each source image encoded by the VAE and noised to the
    first timestep."""
    images = pipe.image_processor.preprocess([request.init_image for request in requests])
    encode = sdxl_encoded_rows if pipeline_family(pipe) == SDXL else encoded_rows
    image_latents = encode(pipe, images.to(device=device, dtype=dtype), generators)
    noise = randn_tensor(image_latents.shape, generator=generators, device=device, dtype=dtype)
    return scheduler.add_noise(image_latents, noise, first_timestep.repeat(len(requests)))


class RowConditioning:
    """The UNet rows' prompt conditioning at each step (rows: every CFG row's negative
    prompt, then every request's prompt), in groups of rows with as many tokens: one model
    call each. `request_rows`: each request's UNet rows, to run them as that request alone
    (gpu_workers.batch_invariance)."""

    def __init__(self, schedules, request_rows, device):
        self.schedules = schedules
        self.request_rows = request_rows
        self.device = device
        self._joined = {}  # the last step's groups: the parts' ids → the parts joined
        self._alone = {}  # a call's rows and padding → its each_request_alone context
        self._row_orders = {}  # the calls' rows, in order → where each row's output goes

    def groups(self, steps):
        """(rows, joined conditioning) per group for the model call at each UNet
        row's step (`steps`, row for row: rows of a running batch may be at different
        steps); rows None: one group of every row, in order."""
        parts = [schedule.at(step) for schedule, step in zip(self.schedules, steps, strict=True)]
        by_length = {}
        for row, part in enumerate(parts):
            by_length.setdefault(part.embeds.shape[1], []).append(row)
        groups = list(by_length.values())
        # Joined again only where a row's part changed since the last step; only the last
        # step's are kept (alternating rows could otherwise keep one per step).
        joined = {}
        for rows in groups:
            key = tuple(id(parts[row]) for row in rows)
            joined[key] = self._joined.get(key)
            if joined[key] is None:
                pooled = [parts[row].pooled for row in rows]
                joined[key] = Conditioning(
                    torch.cat([parts[row].embeds for row in rows]),
                    None if pooled[0] is None else torch.cat(pooled),
                )
        self._joined = joined
        for rows in groups:
            text = joined[tuple(id(parts[row]) for row in rows)]
            yield (None if len(groups) == 1 else rows), text

    def alone_in(self, rows, padding=0):
        """The each_request_alone context of a model call on the UNet rows `rows` followed
        by `padding` copies of the last one (batch buckets)."""
        key = (tuple(rows), padding)
        if key not in self._alone:
            groups = requests_in_call(self.request_rows, rows, padding)
            self._alone[key] = each_request_alone(groups, self.device)
        return self._alone[key]

    def in_row_order(self, calls, predictions):
        """The model calls' outputs (`calls`: each call's UNet rows) as one batch in row
        order."""
        order = tuple(row for rows in calls for row in rows)
        if order == tuple(range(len(order))):
            return predictions[0] if len(predictions) == 1 else torch.cat(predictions)
        if order not in self._row_orders:
            # Made on the device once per order: no copy to the device at every step.
            self._row_orders[order] = torch.tensor(order, device=self.device).argsort()
        return torch.cat(predictions)[self._row_orders[order]]


def requests_in_call(request_rows, rows, padding=0):
    """Each request's rows (`request_rows`: the batch's model rows of each request) among
    a model call's rows `rows` followed by `padding` copies of the last one (batch
    buckets), by position in the call, for each_request_alone: the padding counts as a
    request of its own, so the real rows compute as alone whatever the padding computes."""
    position = {row: n for n, row in enumerate(rows)}
    in_call = [[position[row] for row in request if row in position] for request in request_rows]
    in_call = [group for group in in_call if group]
    if padding:
        in_call.append(list(range(len(rows), len(rows) + padding)))
    return in_call


def bucket_calls(request_rows, members, largest):
    """The model rows `members` in model calls of at most `largest` rows (the largest
    batch bucket), each request's rows (`request_rows`) in one call (the shape they have
    alone), in row order."""
    member_set = set(members)
    calls, call = [], []
    for request in request_rows:
        rows = [row for row in request if row in member_set]
        # A bucket smaller than a request's rows (largest 1 with CFG) splits them.
        pieces = [rows] if len(rows) <= largest else [[row] for row in rows]
        for piece in pieces:
            if piece and len(call) + len(piece) > largest:
                calls.append(sorted(call))
                call = []
            call += piece
    return [*calls, sorted(call)] if call else calls


def padded_rows(rows, buckets):
    """`rows` (indices into a model call's inputs, for rows_of) followed by copies of the
    last one up to the bucket that holds them, and the number of copies; buckets (): `rows`
    as they are, no copies."""
    padding = bucket_for(len(rows), buckets) - len(rows) if buckets else 0
    return [*rows, *rows[-1:] * padding], padding


def rows_of(value, rows):
    """The model rows `rows` of a model input (a tensor, or a list or dict of them); rows
    None: all of them, the input itself. Rows keep the batch's memory layout: kernels are
    chosen by layout."""
    if isinstance(value, dict):
        return {key: rows_of(item, rows) for key, item in value.items()}
    if isinstance(value, list):
        return [rows_of(item, rows) for item in value]
    if rows is None or value is None:
        return value
    layout = torch.contiguous_format
    if value.dim() == 4 and not value.is_contiguous():
        if value.is_contiguous(memory_format=torch.channels_last):
            layout = torch.channels_last
    return value[rows].contiguous(memory_format=layout)


@dataclass
class InpaintState:
    """What an inpaint batch carries through the loop, after StableDiffusionInpaintPipeline."""

    latents: torch.Tensor
    noise: torch.Tensor
    image_latents: torch.Tensor | None  # the source, kept outside the mask (4-channel UNets)
    mask: torch.Tensor  # at latent resolution, 1 where the image is redrawn
    masked_image_latents: torch.Tensor  # what 9-channel inpainting UNets also see
    blends: bool  # a plain (4-channel) UNet: the source is blended back in after each step


def inpaint_start(pipe, requests, scheduler, first_timestep, generators, device, dtype):
    height, width = requests[0].height, requests[0].width
    init_image = pipe.image_processor.preprocess(
        [request.init_image for request in requests], height=height, width=width
    ).to(dtype=torch.float32)
    strength_max = requests[0].strength == 1.0
    # Plain models are steered by blending the noised source back in outside the mask after
    # every step; inpainting models (9 input channels) see mask and source themselves.
    blends = pipe.unet.config.in_channels == 4
    sdxl = pipeline_family(pipe) == SDXL
    encode = encoded_rows
    if sdxl:

        def encode(pipe, images, generators):
            return sdxl_encoded_rows(pipe, images, generators, latents_stats=False)

    image_latents = None
    if blends or not strength_max:
        image_latents = encode(pipe, init_image.to(device=device, dtype=dtype), generators)
        # The pipelines' repeat() leaves them contiguous, whatever layout the VAE gave; the
        # UNet's convolutions pick their kernels by layout, so the pixels depend on it.
        image_latents = image_latents.contiguous()
    shape = (
        len(requests),
        pipe.vae.config.latent_channels,
        height // pipe.vae_scale_factor,
        width // pipe.vae_scale_factor,
    )
    noise = randn_tensor(shape, generator=generators, device=device, dtype=dtype)
    if strength_max:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(image_latents, noise, first_timestep.repeat(len(requests)))
    mask_processor = VaeImageProcessor(
        vae_scale_factor=pipe.vae_scale_factor,
        do_normalize=False,
        do_binarize=True,
        do_convert_grayscale=True,
    )
    mask_condition = mask_processor.preprocess(
        [request.mask_image for request in requests], height=height, width=width
    )
    masked_image = init_image * (mask_condition < 0.5)
    mask = torch.nn.functional.interpolate(
        mask_condition, size=(height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    ).to(device=device, dtype=dtype)
    masked_image_latents = encode(pipe, masked_image.to(device=device, dtype=dtype), generators)
    return InpaintState(latents, noise, image_latents, mask, masked_image_latents, blends)


@dataclass
class ControlState:
    """What a ControlNet batch carries through the loop, after
    StableDiffusionControlNetPipeline and StableDiffusionXLControlNetPipeline."""

    controlnet: torch.nn.Module
    images: torch.Tensor  # conditioning images, rows as the UNet's (uncond rows, then all)
    scales: list[float]  # per model call: the scale, or 0 outside guidance start..end


def control_start(pipe, requests, controlnet, cfg_rows, timesteps, device) -> ControlState:
    """Each row's conditioning image (made here from the request's image: canny edges),
    preprocessed as the pipeline's control_image_processor does, and the scale of each
    model call."""
    if controlnet is None:
        raise GenerationFailed("A ControlNet request needs its ControlNet model loaded.")
    fits = all(
        controlnet.config.get(name) == pipe.unet.config.get(name)
        for name in ("cross_attention_dim", "addition_embed_type")
    )
    if not fits:
        raise GenerationFailed(
            f"The ControlNet {requests[0].control.name or requests[0].control.model_source} "
            "does not fit this model: it is made for another base model family."
        )
    width, height = requests[0].width, requests[0].height
    conditioning = [
        control_image_from(
            request.control.image,
            width,
            height,
            module=request.control.module,
            low_threshold=request.control.low_threshold,
            high_threshold=request.control.high_threshold,
        )
        for request in requests
    ]
    processor = VaeImageProcessor(
        vae_scale_factor=pipe.vae_scale_factor, do_convert_rgb=True, do_normalize=False
    )
    images = processor.preprocess(conditioning, height=height, width=width)
    # The pipeline's repeat_interleave leaves them contiguous, whatever layout the image
    # processor gave; convolutions pick their kernels by layout, so the pixels depend on it.
    images = images.to(dtype=torch.float32).contiguous()
    images = images.to(device=device, dtype=controlnet.dtype)
    images = torch.cat([images[cfg_rows], images])
    # One scale and span per batch (BatchKey.control); the pipeline's controlnet_keep.
    control = requests[0].control
    scales = [
        control.conditioning_scale
        * (
            1.0
            - float(
                i / len(timesteps) < control.guidance_start
                or (i + 1) / len(timesteps) > control.guidance_end
            )
        )
        for i in range(len(timesteps))
    ]
    return ControlState(controlnet, images, scales)


@dataclass(eq=False)
class Row:
    """One request's own state in a running batch (RunningBatch): its scheduler (timesteps,
    sigmas, multistep history), latents, noise generator and the UNet inputs of its rows
    (`unet_rows`-shaped: its unconditional row first with CFG, then its conditional one).
    Rows of one batch share each model call but may be at different steps."""

    request: GenerationRequest
    scheduler: SchedulerMixin
    timesteps: torch.Tensor  # this row's model calls (img2img: from its strength on)
    cfg: bool
    guidance: torch.Tensor  # (1, 1, 1, 1)
    latents: torch.Tensor  # (1, C, H, W)
    step_kwargs: dict  # the generator, for schedulers that draw noise every step
    num_warmup_steps: int
    positive: ScheduledConditioning
    negative: ScheduledConditioning | None  # with CFG only
    added_cond_kwargs: dict  # SDXL's time_ids, an IP-Adapter's image_embeds, unet_rows each
    timestep_cond: torch.Tensor | None  # guidance-distilled UNets (LCM), (1, dim)
    control: ControlState | None
    inpaint: InpaintState | None
    calls: int = 0  # model calls made
    step: int = 0  # steps ended (Heun makes two calls per step)
    denoised: torch.Tensor | None = None  # the last ended step's, for previews

    @property
    def done(self) -> bool:
        return self.calls == len(self.timesteps)

    @property
    def timestep(self) -> torch.Tensor:
        return self.timesteps[self.calls]

    def unet_rows(self, value):
        """`value` (one row per request row) as this row's UNet rows."""
        return torch.cat([value, value]) if self.cfg else value


class RunningBatch:
    """Requests denoised together, each row at its own step: one model call per step for
    every row, each row's scheduler stepped on its own rows. Rows join (`add`) and leave
    (`remove`) between steps, so a request that arrives while a batch runs starts at the
    next step and one that finishes is decoded (`decode`) without waiting for the others.

    Written out after StableDiffusionPipeline, StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline and their SDXL and ControlNet counterparts' __call__:
    a row is started exactly as that request alone (its own prompt encoding, timesteps,
    noise from its own seed), and its arithmetic in the batch equals its arithmetic alone on
    the CPU (gpu_workers.batch_invariance; a scheduler's step is elementwise per row).

    Every row shares the pipeline, its LoRAs, the ControlNet and IP-Adapter models (the
    adapter's scale) and the textual-inversion embeddings (gpu_workers.engine.BatchKey);
    prompts, seeds, guidance, step counts, samplers, strengths, clip skip and ControlNet
    scales and spans are per row.
    """

    def __init__(
        self,
        pipe: StableDiffusionPipeline | StableDiffusionXLPipeline,
        device: torch.device,
        *,
        controlnet: torch.nn.Module | None = None,
        ip_adapter: LoadedIPAdapter | None = None,
        ip_adapter_scale: float = 1.0,
        embeddings: tuple = (),
        buckets: tuple[int, ...] = (),
        decode_chunk: int = 1,
        cuda_graphs: bool = False,
    ):
        """`buckets`: UNet rows per model call, ascending (WorkerConfig.batch_buckets): each
        call is padded to the next with copies of its last row, whose outputs are dropped,
        and a call of more rows than the largest is split into calls of that size, so a
        compiled UNet sees no other batch size. (): calls of the batch's rows as they are.
        `decode_chunk`: finished images per VAE call. `cuda_graphs`: the UNet and VAE
        decoder replay CUDA graphs (torch.compile's "reduce-overhead"), whose outputs the
        next replay overwrites: they are copied out at once."""
        self.pipe = pipe
        self.device = device
        self.controlnet = controlnet
        self.ip_adapter = ip_adapter
        self.ip_adapter_scale = ip_adapter_scale
        self.embeddings = embeddings
        self.buckets = buckets
        self.decode_chunk = decode_chunk
        self.cuda_graphs = cuda_graphs
        self.rows: list[Row] = []
        self._projection = None
        self._contexts = ExitStack()
        # Made again only when the batch's rows change: (the rows they were made for, the
        # RowConditioning, the CFG rows' guidance and where they are on the device).
        self._composition = (None, None, None, None)

    def __enter__(self) -> "RunningBatch":
        with ExitStack() as contexts:
            contexts.enter_context(embeddings_loaded(self.pipe, self.embeddings))
            if self.ip_adapter is not None:
                self._projection = contexts.enter_context(
                    ip_adapter_active(self.pipe.unet, self.ip_adapter, self.ip_adapter_scale)
                )
            self._contexts = contexts.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        self._contexts.close()
        # With CPU offload: every model back to the CPU, as the pipeline does after each call.
        self.pipe.maybe_free_model_hooks()

    @torch.no_grad()
    def add(self, request: GenerationRequest) -> Row:
        """Start `request` as it starts alone and join it to the batch at the next step."""
        row = self._start(request)
        self.rows.append(row)
        return row

    def remove(self, row: Row) -> None:
        self.rows.remove(row)

    def _start(self, request: GenerationRequest) -> Row:
        pipe, device = self.pipe, self.device
        sdxl = pipeline_family(pipe) == SDXL
        requests = [request]
        # 1. Guidance. Guidance-distilled UNets (LCM) take it as an embedding instead of
        # running CFG; otherwise, as in the pipeline, CFG runs only where guidance_scale > 1.
        distilled = pipe.unet.config.time_cond_proj_dim is not None
        cfg_rows = [0] if not distilled and request.guidance_scale > 1 else []
        guidance = torch.tensor([request.guidance_scale], device=device).view(-1, 1, 1, 1)

        # 2. Prompts (A1111's prompt language: gpu_workers.prompt_encoding); the negative
        # prompt only where CFG uses it.
        positives, negatives = batch_conditioning(pipe, requests, cfg_rows, device=device)
        dtype = positives[0].parts[0].embeds.dtype
        timestep_cond = None
        if distilled:
            timestep_cond = pipe.get_guidance_scale_embedding(
                torch.tensor([request.guidance_scale - 1]),
                embedding_dim=pipe.unet.config.time_cond_proj_dim,
            ).to(device=device, dtype=dtype)
        added_cond_kwargs = {}
        if sdxl:
            # SDXL's size conditions (the pooled prompts, which change with the prompts'
            # schedules, are added at each step).
            time_ids = sdxl_time_ids(pipe, requests, dtype, device)
            added_cond_kwargs["time_ids"] = torch.cat([time_ids[cfg_rows], time_ids])
        if request.ip_adapter is not None:
            images = [request.ip_adapter.image]
            added_cond_kwargs["image_embeds"] = image_embeds(
                self.ip_adapter, images, self._projection, cfg_rows, device
            )

        # 3. Timesteps, on the row's own scheduler. img2img starts part way, at its strength.
        scheduler = fresh_scheduler(pipe, request.sampler)
        scheduler.set_timesteps(request.steps, device=device)
        timesteps = scheduler.timesteps
        denoising_steps = request.denoising_steps()
        if request.init_image is not None:
            t_start = request.steps - denoising_steps
            timesteps = timesteps[t_start * scheduler.order :]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(t_start * scheduler.order)
        elif sdxl and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)  # SDXL's txt2img pipeline does; SD's leaves it unset

        # 4. Initial latents, from the request's own seed.
        generators = [torch.Generator(device=device).manual_seed(request.seed)]
        if pipe.unet.config.in_channels == 9 and request.mode != "inpaint":
            raise GenerationFailed(
                "This is an inpainting model: use it to inpaint or outpaint, with a mask."
            )
        inpaint = None
        if request.mode == "inpaint":
            inpaint = inpaint_start(
                pipe, requests, scheduler, timesteps[:1], generators, device, dtype
            )
            latents = inpaint.latents
        elif request.mode == "txt2img":
            shape = (
                1,
                pipe.unet.config.in_channels,
                request.height // pipe.vae_scale_factor,
                request.width // pipe.vae_scale_factor,
            )
            latents = randn_tensor(shape, generator=generators, device=device, dtype=dtype)
            latents = varied_noise(latents, requests, device)
            latents = latents * scheduler.init_noise_sigma
        else:
            latents = noised_image_latents(
                pipe, requests, scheduler, timesteps[:1], generators, device, dtype
            )
        control = None
        if request.control is not None:
            control = control_start(pipe, requests, self.controlnet, cfg_rows, timesteps, device)
        # Ancestral and SDE schedulers draw fresh noise every step, also from the row's seed.
        step_kwargs = {}
        if "generator" in inspect.signature(scheduler.step).parameters:
            step_kwargs["generator"] = generators
        return Row(
            request=request,
            scheduler=scheduler,
            timesteps=timesteps,
            cfg=bool(cfg_rows),
            guidance=guidance,
            latents=latents,
            step_kwargs=step_kwargs,
            num_warmup_steps=len(timesteps) - denoising_steps * scheduler.order,
            positive=positives[0],
            negative=negatives[0],
            added_cond_kwargs=added_cond_kwargs,
            timestep_cond=timestep_cond,
            control=control,
            inpaint=inpaint,
        )

    def _row_conditioning(self, rows: list[Row], cfg: list[int]):
        """The rows' prompt conditioning, the CFG rows' guidance (n, 1, 1, 1) and their
        indices on the device; made again only when the batch's rows change, so a step
        copies nothing to the device."""
        made_for, *made = self._composition
        # The rows themselves, not their ids: a new row may reuse a removed one's id.
        if made_for != tuple(rows):
            request_rows = [
                ([cfg.index(n)] if n in cfg else []) + [len(cfg) + n] for n in range(len(rows))
            ]
            schedules = [rows[n].negative for n in cfg] + [row.positive for row in rows]
            made = [
                RowConditioning(schedules, request_rows, self.device),
                torch.cat([rows[n].guidance for n in cfg]) if cfg else None,
                torch.tensor(cfg, device=self.device, dtype=torch.long),
            ]
            self._composition = (tuple(rows), *made)
        return made

    @torch.no_grad()
    def step(self) -> list[Row]:
        """One model call for every row, each row's scheduler stepped on its rows; returns
        the rows whose step ended (Heun makes two model calls per step, PLMS one extra)."""
        pipe, rows = self.pipe, self.rows
        sdxl = pipeline_family(pipe) == SDXL
        # UNet rows: the CFG rows' unconditional copies, then every row's conditional one;
        # for a request alone exactly the pipeline's torch.cat([uncond, cond]).
        cfg = [n for n, row in enumerate(rows) if row.cfg]

        def unet_rows(values):
            """Per row, its UNet rows' values → the batch's UNet rows."""
            return torch.cat([values[n][:1] for n in cfg] + [value[-1:] for value in values])

        timesteps = [row.timestep for row in rows]
        scaled = [
            row.scheduler.scale_model_input(row.latents, t)
            for row, t in zip(rows, timesteps, strict=True)
        ]
        if len(rows) == 1 and not cfg:
            # As the pipeline passes it: a copy would be contiguous, and convolutions pick
            # their kernels by layout.
            latent_model_input, t = scaled[0], timesteps[0]
        else:
            latent_model_input = unet_rows(scaled)
            # Per UNet row: the UNet embeds each row's timestep apart.
            t = torch.stack([timesteps[n] for n in cfg] + timesteps)
        if self.buckets:
            # The timesteps as every call has them whatever the sampler, so a compiled UNet has
            # one graph per bucket: one per row, in float32 (the UNet embeds them in float32:
            # the same embedding).
            t = t.reshape(-1).float()
        added_cond_kwargs = {
            name: unet_rows([row.added_cond_kwargs[name] for row in rows])
            if name == "time_ids"
            else [
                unet_rows([row.added_cond_kwargs[name][adapter] for row in rows])
                for adapter in range(len(rows[0].added_cond_kwargs[name]))
            ]
            for name in rows[0].added_cond_kwargs
        }
        timestep_cond = None
        if rows[0].timestep_cond is not None:
            timestep_cond = torch.cat([row.timestep_cond for row in rows])
        conditioning, guidance, cfg_index = self._row_conditioning(rows, cfg)
        steps = [rows[n].step for n in cfg] + [row.step for row in rows]
        control_images = control_scale = None
        if rows[0].control is not None:
            control_images = unet_rows([row.control.images for row in rows])
            scales = [rows[n].control.scales[rows[n].calls] for n in cfg]
            scales += [row.control.scales[row.calls] for row in rows]
            control_scale = scales[0]
            if len(set(scales)) > 1:
                # Rows at different steps of their ControlNet spans: a scale per UNet row
                # (the residuals' dtype, as the float one multiplies them).
                control_scale = torch.tensor(
                    scales, device=self.device, dtype=self.controlnet.dtype
                ).view(-1, 1, 1, 1)
        mask = masked = None
        if rows[0].inpaint is not None and pipe.unet.config.in_channels == 9:
            mask = unet_rows([row.inpaint.mask for row in rows])
            masked = unet_rows([row.inpaint.masked_image_latents for row in rows])

        # Rows whose prompts have as many tokens share a model call; A1111 too runs a prompt
        # and a negative prompt of different lengths apart (unpadded, by default).
        predictions, calls = [], []
        unet_row_count = len(cfg) + len(rows)
        for group, text in conditioning.groups(steps):
            members = list(range(unet_row_count)) if group is None else group
            group_calls = [members]
            if self.buckets:
                group_calls = bucket_calls(conditioning.request_rows, members, self.buckets[-1])
            position = {row: n for n, row in enumerate(members)}
            for real_rows in group_calls:
                calls.append(real_rows)
                # The call's UNet rows, then `padding` copies of its last one; None: the
                # group's rows as they are (indexing would copy them).
                positions, padding = padded_rows([position[row] for row in real_rows], self.buckets)
                whole = real_rows == members and not padding
                call_rows = group if whole else [members[p] for p in positions]
                positions = None if whole else positions
                inputs = {
                    "encoder_hidden_states": rows_of(text.embeds, positions),
                    "added_cond_kwargs": rows_of(added_cond_kwargs, call_rows),
                }
                if text.pooled is not None:
                    inputs["added_cond_kwargs"]["text_embeds"] = rows_of(text.pooled, positions)
                call_input = rows_of(latent_model_input, call_rows)
                call_t = t if t.dim() == 0 else rows_of(t, call_rows)
                alone = conditioning.alone_in(real_rows, padding)
                residuals = {}
                if control_images is not None:
                    scale = control_scale
                    if isinstance(scale, torch.Tensor):
                        scale = rows_of(scale, call_rows)
                    with alone:
                        down_block_res_samples, mid_block_res_sample = self.controlnet(
                            call_input,
                            call_t,
                            encoder_hidden_states=inputs["encoder_hidden_states"],
                            controlnet_cond=rows_of(control_images, call_rows),
                            # SDXL ControlNets take the pooled prompt and sizes as the UNet does.
                            added_cond_kwargs=inputs["added_cond_kwargs"] if sdxl else None,
                            conditioning_scale=scale,
                            guess_mode=False,
                            return_dict=False,
                        )
                    residuals = {
                        "down_block_additional_residuals": down_block_res_samples,
                        "mid_block_additional_residual": mid_block_res_sample,
                    }
                # After the ControlNet, which sees the latents alone (the ControlNet inpaint
                # pipelines'), the mask and the masked image for inpainting UNets.
                if mask is not None:
                    call_input = torch.cat(
                        [call_input, rows_of(mask, call_rows), rows_of(masked, call_rows)],
                        dim=1,
                    )
                if self.cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                with alone:
                    prediction = pipe.unet(
                        call_input,
                        call_t,
                        **{**inputs, "added_cond_kwargs": inputs["added_cond_kwargs"] or None},
                        timestep_cond=rows_of(timestep_cond, call_rows),
                        return_dict=False,
                        **residuals,
                    )[0]
                if self.cuda_graphs:
                    prediction = prediction.clone()  # the next replay overwrites it
                predictions.append(prediction[: len(real_rows)] if padding else prediction)
        noise_pred = conditioning.in_row_order(calls, predictions)
        noise_pred_uncond, noise_pred = noise_pred[: len(cfg)], noise_pred[len(cfg) :]
        if cfg:
            noise_pred_text = noise_pred[cfg_index]
            # The pipeline multiplies by a Python float: the product is computed in float32
            # and rounded to the latents' dtype before the sum. Same here, for fp16 too.
            noise_pred[cfg_index] = noise_pred_uncond + (
                guidance * (noise_pred_text - noise_pred_uncond)
            ).to(noise_pred.dtype)
        return [
            row
            for n, row in enumerate(rows)
            if self._scheduler_step(row, noise_pred[n : n + 1], timesteps[n])
        ]

    @staticmethod
    def _scheduler_step(row: Row, noise_pred: torch.Tensor, t: torch.Tensor) -> bool:
        """Step `row` on its own scheduler; whether that ended one of its steps."""
        output = row.scheduler.step(noise_pred, t, row.latents, **row.step_kwargs)
        latents = output.prev_sample
        inpaint = row.inpaint
        if inpaint is not None and inpaint.blends:
            # Outside the mask, the source noised to where the next step starts.
            source = inpaint.image_latents
            if row.calls < len(row.timesteps) - 1:
                # A slice, not a tensor made of its value: that would wait for the device.
                next_timestep = row.timesteps[row.calls + 1 : row.calls + 2]
                source = row.scheduler.add_noise(source, inpaint.noise, next_timestep)
            latents = (1 - inpaint.mask) * source + inpaint.mask * latents
        row.latents = latents
        row.calls += 1
        # A step ends where the pipeline's progress bar counts one.
        ended = row.done or (
            row.calls > row.num_warmup_steps and row.calls % row.scheduler.order == 0
        )
        if ended:
            row.step += 1
            # Schedulers that predict the clean latents make better previews from them.
            denoised = getattr(output, "pred_original_sample", None)
            row.denoised = latents if denoised is None else denoised
        return ended

    @torch.no_grad()
    def decode(self, rows: list[Row]) -> "DecodedImages":
        """The images of `rows` (done denoising), in order: `decode_chunk` rows per VAE call
        (on a CPU 1 by default: a batch's VAE attention multiplies matrices laid out
        otherwise, which rounds differently, see gpu_workers.batch_invariance; VAE slicing
        decodes one at a time too), each chunk padded to its bucket with buckets on. From
        a GPU they are on their way to the host when this returns (DecodedImages)."""
        chunks = []
        for start in range(0, len(rows), self.decode_chunk):
            chunk = rows[start : start + self.decode_chunk]
            latents = _latents_of(chunk)
            padding = bucket_for(len(chunk), self.buckets) - len(chunk) if self.buckets else 0
            if padding:
                # Only then: a copy would change the latents' layout, and with it the pixels.
                latents = torch.cat([latents, latents[-1:].expand(padding, -1, -1, -1)])
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            chunks.append(vae_decoded(self.pipe, latents)[: len(chunk)])
        return DecodedImages(self.pipe.image_processor, chunks)


class DecodedImages:
    """Decoded images as 8-bit pixels, made on the device and copied to the host once per
    chunk. From a GPU the copies are queued behind the decode and nothing waits for them
    here, so the engine can queue its next step first: `ready()` says whether they are
    done, `images()` waits for them. `image_processor.postprocess(decoded, "pil")`, pixel
    for pixel (which copies float images to the host and converts them with NumPy)."""

    def __init__(self, image_processor: VaeImageProcessor, chunks: list[torch.Tensor]):
        self._pixels = []  # per chunk, (images, height, width, channels) uint8 on the host
        self._copied = None  # a CUDA event after the copies
        for decoded in chunks:
            if image_processor.config.do_normalize:
                decoded = (decoded * 0.5 + 0.5).clamp(0, 1)  # in the decoded dtype, as there
            # Scaled in float32 and rounded half to even, as NumPy does.
            pixels = (decoded.float() * 255).round().to(torch.uint8)
            pixels = pixels.permute(0, 2, 3, 1).contiguous()
            if pixels.device.type == "cuda":
                host = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
                self._pixels.append(host.copy_(pixels, non_blocking=True))
                self._copied = torch.cuda.Event()
            else:
                self._pixels.append(pixels.cpu())
        if self._copied is not None:
            self._copied.record()

    def ready(self) -> bool:
        return self._copied is None or self._copied.query()

    def images(self) -> list[Image.Image]:
        if self._copied is not None:
            self._copied.synchronize()
        return [Image.fromarray(image) for pixels in self._pixels for image in pixels.numpy()]


def pil_images(image_processor: VaeImageProcessor, decoded: torch.Tensor) -> list[Image.Image]:
    """`image_processor.postprocess(decoded, output_type="pil")`, pixel for pixel, made as
    RunningBatch.decode makes them."""
    return DecodedImages(image_processor, [decoded]).images()


@torch.no_grad()
def warm_up_buckets(
    pipe, device: torch.device, buckets: tuple[int, ...], *, max_rows: int, decode_chunk: int
) -> dict[str, list[int]]:
    """One UNet call for every bucket up to the one that holds `max_rows` UNet rows, and one
    VAE decode for every bucket up to `decode_chunk` images, shaped as RunningBatch makes
    them at the model's default size with prompts of one chunk of 77 tokens: a compiled
    model compiles (and records its CUDA graphs) for each here, not in a job. Other sizes
    and longer prompts compile on their first batch. Returns the batch sizes run."""
    unet = pipe.unet
    unet_sizes = buckets_up_to(max_rows, buckets)
    decode_sizes = buckets_up_to(decode_chunk, buckets)
    side = unet.config.sample_size
    height, width = (side, side) if isinstance(side, int) else side
    dtype = unet.dtype
    sdxl = pipeline_family(pipe) == SDXL
    for size in unet_sizes:
        inputs = {
            "encoder_hidden_states": torch.zeros(
                size, 77, unet.config.cross_attention_dim, device=device, dtype=dtype
            ),
            "timestep_cond": None,
            "added_cond_kwargs": None,
        }
        if unet.config.time_cond_proj_dim is not None:
            inputs["timestep_cond"] = torch.zeros(
                size, unet.config.time_cond_proj_dim, device=device, dtype=dtype
            )
        if sdxl:
            projection_dim = pipe.text_encoder_2.config.projection_dim
            inputs["added_cond_kwargs"] = {
                "time_ids": torch.zeros(size, 6, device=device, dtype=dtype),
                "text_embeds": torch.zeros(size, projection_dim, device=device, dtype=dtype),
            }
        sample = torch.zeros(
            size, unet.config.in_channels, height, width, device=device, dtype=dtype
        )
        torch.compiler.cudagraph_mark_step_begin()
        timesteps = torch.full((size,), 999.0, device=device)
        unet(sample, timesteps, return_dict=False, **inputs)
    latent_channels = pipe.vae.config.latent_channels
    for size in decode_sizes:
        latents = torch.zeros(size, latent_channels, height, width, device=device, dtype=dtype)
        torch.compiler.cudagraph_mark_step_begin()
        vae_decoded(pipe, latents)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"unet": unet_sizes, "vae_decoder": decode_sizes}


def bucket_for(rows: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds `rows` (at most the largest bucket)."""
    return next(size for size in buckets if size >= rows)


def buckets_up_to(rows: int, buckets: tuple[int, ...]) -> list[int]:
    """The bucket sizes of model calls of up to `rows` rows: every bucket up to the one
    that holds `rows` (larger batches are split into calls of the largest)."""
    largest = bucket_for(min(rows, buckets[-1]), buckets)
    return [size for size in buckets if size <= largest]


def _latents_of(rows: list[Row]) -> torch.Tensor:
    """The rows' latents as one batch; one row's as its batch row would be indexed out."""
    if len(rows) == 1:
        return rows[0].latents[[0]]
    return torch.cat([row.latents for row in rows])
