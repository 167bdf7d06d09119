"""A running batch of FLUX.1 or Stable Diffusion 3.x txt2img requests (FlowBatch), written
out after FluxPipeline's and StableDiffusion3Pipeline's __call__ (diffusers 0.42).

The same contract as gpu_workers.denoise.RunningBatch, which the engine drives alike: each
request is a row with its own flow-matching scheduler (its sigmas and step index), noise
generator, guidance and prompts; rows at different steps share one transformer call (a
timestep per transformer row); a request alone gets the pipeline's image, and on the CPU a
row in a batch gets its image alone, bitwise (gpu_workers.batch_invariance).

- FLUX.1: CLIP's pooled prompt and T5's sequence; the latents packed 2×2 into tokens with
  their (text, row, column) ids; [dev] embeds the distilled guidance value, so no CFG rows
  ([schnell] has no guidance at all).
- SD 3.x: two CLIPs' hidden states and T5's sequence, the pooled prompts side by side; CFG
  rows where guidance_scale > 1, each request's unconditional row just before its
  conditional one.

Prompts are encoded by the pipeline's own encode_prompt, as written: A1111's emphasis is
not read for these families yet, and prompt editing or alternation is refused. A T5 prompt
longer than the family's limit is refused, never cut short.
"""

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from gpu_workers.batch_invariance import each_request_alone
from gpu_workers.denoise import varied_noise
from gpu_workers.pipelines import FAMILY_NAMES, FLUX, pipeline_family
from gpu_workers.prompt_syntax import prompt_schedule
from gpu_workers.requests import GenerationFailed, GenerationRequest

# The samplers these families run so far: the model's own flow-matching Euler.
FLOW_SAMPLERS = (None, "Euler")


def t5_token_limit(pipe) -> int:
    """The longest prompt T5 reads for the family, in tokens with its end token: what the
    pipelines' max_sequence_length allows (FLUX.1 [dev] 512, [schnell] 256; SD 3.x 256)."""
    if pipeline_family(pipe) == FLUX:
        return 512 if pipe.transformer.config.guidance_embeds else 256
    return 256


def batch_refusal(pipe, request: GenerationRequest) -> str | None:
    """Why a batch of requests like `request` (BatchKey: mode, LoRAs, ControlNet,
    IP-Adapter, embeddings) can't run on this flow model yet, or None."""
    family = FAMILY_NAMES[pipeline_family(pipe)]
    if request.mode != "txt2img":
        return f"{family} models don't support {request.mode} in the studio yet."
    unsupported = {
        "LoRAs": request.loras,
        "ControlNet": request.control,
        "IP-Adapter": request.ip_adapter,
        "textual-inversion embeddings": request.embeddings,
    }
    for feature, used in unsupported.items():
        if used:
            return f"{family} models don't support {feature} in the studio yet."
    return None


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
    calls: int = 0
    step: int = 0
    # No cheap latent preview for 16-channel latents yet: the engine sends none.
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


class FlowBatch:
    """FLUX.1 or SD 3.x requests denoised together, each row at its own step (see the
    module's docstring); rows join (`add`) and leave (`remove`) between steps."""

    def __init__(self, pipe, device: torch.device):
        self.pipe = pipe
        self.device = device
        self.family = pipeline_family(pipe)
        self.rows: list[FlowRow] = []
        self._text_ids = None  # FLUX.1: T5's token ids, all zeros, one set for every row
        self._image_ids = None

    def __enter__(self) -> "FlowBatch":
        return self

    def __exit__(self, *exc_info) -> None:
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
        if request.sampler not in FLOW_SAMPLERS:
            raise GenerationFailed(
                f"{family} models run the Euler (flow matching) sampler only in the studio so "
                f"far, not {request.sampler}."
            )
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
        limit = t5_token_limit(self.pipe)
        tokenizer = self.pipe.tokenizer_2 if self.family == FLUX else self.pipe.tokenizer_3
        for name, prompt in prompts.items():
            tokens = len(tokenizer(prompt).input_ids)
            if tokens > limit:
                raise GenerationFailed(
                    f"The {name} is {tokens} T5 tokens long; {family} models read at most "
                    f"{limit}. Shorten it: the studio never cuts a prompt short."
                )

    def _start(self, request: GenerationRequest) -> FlowRow:
        self._refuse_row(request)
        pipe, device = self.pipe, self.device
        generator = [torch.Generator(device=device).manual_seed(request.seed)]
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        limit = t5_token_limit(pipe)
        height, width = request.height, request.width
        guidance = None
        if self.family == FLUX:
            cfg = False
            prompt_embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=request.prompt, prompt_2=None, device=device, max_sequence_length=limit
            )
            self._text_ids = text_ids
            channels = pipe.transformer.config.in_channels // 4
            latent_height = 2 * (height // (pipe.vae_scale_factor * 2))
            latent_width = 2 * (width // (pipe.vae_scale_factor * 2))
            noise = randn_tensor(
                (1, channels, latent_height, latent_width),
                generator=generator,
                device=device,
                dtype=prompt_embeds.dtype,
            )
            noise = varied_noise(noise, [request], device)
            latents = pipe._pack_latents(noise, 1, channels, latent_height, latent_width)
            self._image_ids = pipe._prepare_latent_image_ids(
                1, latent_height // 2, latent_width // 2, device, prompt_embeds.dtype
            )
            sigmas = np.linspace(1.0, 1 / request.steps, request.steps)
            if getattr(scheduler.config, "use_flow_sigmas", False):
                sigmas = None
            image_seq_len = latents.shape[1]
            mu = calculate_shift(
                image_seq_len,
                scheduler.config.get("base_image_seq_len", 256),
                scheduler.config.get("max_image_seq_len", 4096),
                scheduler.config.get("base_shift", 0.5),
                scheduler.config.get("max_shift", 1.15),
            )
            timesteps, steps = retrieve_timesteps(
                scheduler, request.steps, device, sigmas=sigmas, mu=mu
            )
            if pipe.transformer.config.guidance_embeds:
                guidance = torch.full(
                    [1], request.guidance_scale, device=device, dtype=torch.float32
                )
            scheduler.set_begin_index(0)
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
            shape = (
                1,
                pipe.transformer.config.in_channels,
                height // pipe.vae_scale_factor,
                width // pipe.vae_scale_factor,
            )
            latents = randn_tensor(shape, generator=generator, device=device, dtype=positive.dtype)
            latents = varied_noise(latents, [request], device)
            scheduler_kwargs = {}
            if scheduler.config.get("use_dynamic_shifting", None):
                patch = pipe.transformer.config.patch_size
                image_seq_len = (shape[2] // patch) * (shape[3] // patch)
                scheduler_kwargs["mu"] = calculate_shift(
                    image_seq_len,
                    scheduler.config.get("base_image_seq_len", 256),
                    scheduler.config.get("max_image_seq_len", 4096),
                    scheduler.config.get("base_shift", 0.5),
                    scheduler.config.get("max_shift", 1.16),
                )
            timesteps, steps = retrieve_timesteps(
                scheduler, request.steps, device, **scheduler_kwargs
            )
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
        )

    @torch.no_grad()
    def step(self) -> list[FlowRow]:
        """One transformer call for every row, each row's scheduler stepped on its rows;
        returns the rows whose step ended."""
        pipe, rows = self.pipe, self.rows
        # Transformer rows: each request's rows together (its unconditional one, then its
        # conditional one with CFG): for a request alone exactly the pipeline's batch.
        groups, first = [], 0
        for row in rows:
            groups.append(list(range(first, first + row.model_rows)))
            first += row.model_rows
        latents = [torch.cat([row.latents] * 2) if row.cfg else row.latents for row in rows]
        timesteps = torch.cat([row.timestep.expand(row.model_rows) for row in rows])
        # One request: its latents as the pipeline passes them (a copy would be laid out anew).
        hidden_states = latents[0] if len(rows) == 1 else torch.cat(latents)
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
            inputs["txt_ids"] = self._text_ids
            inputs["img_ids"] = self._image_ids
        else:
            inputs["timestep"] = timesteps
        # The few-row products (timestep, guidance and pooled-prompt embeddings, the blocks'
        # modulations) on each request's rows alone; attention over hundreds of tokens
        # rounds alike in any batch.
        with each_request_alone(groups, self.device):
            prediction = pipe.transformer(**inputs, return_dict=False)[0]
        ended = []
        for row, group in zip(rows, groups, strict=True):
            noise_pred = prediction[group[0] : group[-1] + 1]
            if row.cfg:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + row.guidance_scale * (
                    noise_pred_text - noise_pred_uncond
                )
            row.latents = row.scheduler.step(
                noise_pred, row.timestep, row.latents, return_dict=False
            )[0]
            row.calls += 1
            if row.done or (
                row.calls > row.num_warmup_steps and row.calls % row.scheduler.order == 0
            ):
                row.step += 1
                ended.append(row)
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
            image = vae.decode(latents, return_dict=False)[0]
            images += pipe.image_processor.postprocess(image, output_type="pil")
        return images
