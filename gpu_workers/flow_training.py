"""DreamBooth-LoRA training for FLUX.1 and SD 3.x, after diffusers' examples/dreambooth/
train_dreambooth_lora_flux.py and train_dreambooth_lora_sd3.py: LoRA adapters (peft) on the
transformer's attention projections, the flow-matching loss (noisy = (1 - sigma) * x0 +
sigma * noise, target = noise - x0, sigma drawn uniformly: their default "none" weighting
scheme), FLUX.1's packed latents and, for [dev], its distilled guidance embedded at the
scripts' 3.5; SD 3.x conditioned on its three text encoders' sequence and pooled prompt.

With TrainingRequest.fp8_base the frozen transformer is stored in fp8 (1 byte a parameter),
which fits FLUX.1 [dev]'s LoRA training in a 24 GB GPU, as ai-toolkit's
config/examples/train_lora_flux_24gb.yaml does by quantizing it to 8 bits.

The prompts (captions, class prompt, sample prompt) are encoded once and the text encoders
dropped before the transformer moves to the device (without prior preservation, whose
class images need the whole pipeline there first), so T5 XXL's ~9.5 GB in bf16 and the
transformer never share its memory. Training the text encoders is refused (by
gpu_workers.training), as for SDXL.

`gpu_workers.training.train_dreambooth_lora` calls `train_flow_lora` once it has loaded a
flow-family model; the run's contract (progress, samples, cancel, evaluation loss, result)
is the same as SD's.
"""

import dataclasses
import gc
import time
from pathlib import Path

import torch
from diffusers import FluxPipeline
from diffusers.training_utils import cast_training_params, compute_density_for_timestep_sampling
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from gpu_workers import pipelines, training
from gpu_workers.flow import t5_token_limit
from gpu_workers.pipelines import FAMILY_NAMES, FLUX
from gpu_workers.training_plan import TrainingCanceled

# diffusers' SD3 script's default LoRA layers; the FLUX.1 script's default adds the
# feed-forward layers, which roughly doubles the adapter: the studio trains attention only
# for both, as it does on SD's UNet.
TRANSFORMER_TARGET_MODULES = [
    "attn.to_k",
    "attn.to_q",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_k_proj",
    "attn.add_q_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
]
FLUX_TRAINING_GUIDANCE = 3.5  # the FLUX.1 script's --guidance_scale default
SAMPLE_GUIDANCE = {FLUX: 3.5, pipelines.SD3: 7.0}  # the pipelines' defaults
# The loss on the subject's images at these noise levels with fixed noise (see training.py).
EVALUATION_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def training_config(config):
    """The worker's config for training a flow model: bf16 where the worker runs fp16 and
    the GPU has bf16, as diffusers' FLUX.1 script trains (--mixed_precision bf16): T5 and
    FLUX.1's activations overflow fp16."""
    bf16_ready = config.device.startswith("cuda") and torch.cuda.is_bf16_supported()
    if config.dtype == torch.float16 and bf16_ready:
        return dataclasses.replace(config, dtype=torch.bfloat16)
    return config


def train_flow_lora(pipe, request, device, started, *, on_step, on_sample, log, cancel):
    """Train a LoRA on the loaded FLUX.1 / SD 3.x `pipe` (a private copy, still on the CPU)
    on `device`; a `gpu_workers.training.TrainingResult`."""

    family = pipelines.pipeline_family(pipe)
    generator = torch.Generator().manual_seed(request.seed)
    training_scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for model in pipe.components.values():
        if isinstance(model, torch.nn.Module):
            model.requires_grad_(False)
    if request.fp8_base:
        _store_frozen_transformer_in_fp8(pipe.transformer, log)

    class_images = []
    if request.prior_preservation and request.class_images:
        pipe.to(device)  # the class images need the whole pipeline at once
        class_images = training.generate_class_images(
            pipe, request, device, log, cancel, guidance_scale=SAMPLE_GUIDANCE[family]
        )
    else:
        # The transformer joins the device once the text encoders have left it, so the
        # two never share its memory (FLUX.1's: 24 GB and T5's 9.5 GB in bf16).
        for name, model in pipe.components.items():
            if name != "transformer" and isinstance(model, torch.nn.Module):
                model.to(device)
    weight_dtype = pipe.transformer.dtype
    autocast = torch.autocast(
        device.type, dtype=weight_dtype, enabled=weight_dtype != torch.float32
    )
    instance_latents = _encode(
        pipe.vae, training.pixels([i.image for i in request.images]), device
    )
    class_latents = (
        _encode(pipe.vae, training.pixels(class_images), device) if class_images else None
    )
    conditioning = _FlowConditioning(pipe, request, device)
    _drop_text_encoders(pipe, device)
    transformer = pipe.transformer.to(device)

    evaluation = _evaluation_batch(instance_latents, request.seed)
    evaluation_before = _evaluation_loss(pipe, conditioning, evaluation, autocast)
    log(f"Loss on the subject's images before training (fixed noise): {evaluation_before:.4f}.")

    # Activations are recomputed in the backward pass, as the scripts' --gradient_checkpointing:
    # a 12 G-parameter transformer's would not fit beside its weights otherwise.
    transformer.enable_gradient_checkpointing()
    transformer.add_adapter(
        LoraConfig(
            r=request.rank,
            lora_alpha=request.rank,
            init_lora_weights="gaussian",
            target_modules=TRANSFORMER_TARGET_MODULES,
        )
    )
    # The LoRA layers train in fp32 (PEFT makes them in the base layers' dtype, fp8 where
    # the frozen weights are stored in fp8).
    cast_training_params([transformer], dtype=torch.float32)
    parameters = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=request.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    scaler = torch.amp.GradScaler(device.type, enabled=weight_dtype == torch.float16)
    log(
        f"Training {sum(p.numel() for p in parameters):,} LoRA parameters on "
        f"{FAMILY_NAMES[family]}'s transformer (rank {request.rank}) for {request.steps} "
        f"steps on {len(request.images)} images at {request.resolution}px."
    )

    order = training.batches(len(request.images), request.batch_size, generator)
    losses = []
    for step in range(1, request.steps + 1):
        if cancel():
            raise TrainingCanceled(f"Canceled at step {step - 1} of {request.steps}.")
        transformer.train()
        picked = next(order)
        latents = _latents(instance_latents, picked, generator)
        prior_count = len(picked) if class_latents is not None else 0
        if prior_count:
            class_picked = torch.randint(len(class_images), (prior_count,), generator=generator)
            latents = torch.cat([latents, _latents(class_latents, class_picked, generator)])
        with autocast:
            loss = _flow_loss(
                pipe,
                latents,
                conditioning.rows(picked, class_rows=prior_count),
                training_scheduler,
                generator,
                prior_count=prior_count,
                prior_loss_weight=request.prior_loss_weight,
            )
        value = training.optimizer_step(loss, step, request, scaler, optimizer, parameters)
        losses.append(value)
        if on_step:
            on_step(step, request.steps, value)
        is_sample_step = request.sample_every and step % request.sample_every == 0
        if on_sample and (is_sample_step or step == request.steps):
            on_sample(step, _sample(pipe, request, conditioning, device))

    evaluation_after = _evaluation_loss(pipe, conditioning, evaluation, autocast)
    log(f"Loss on the subject's images after training (fixed noise): {evaluation_after:.4f}.")
    lora_path = _save_lora(pipe, request)
    seconds = time.monotonic() - started
    log(f"Saved the LoRA ({Path(lora_path).stat().st_size:,} bytes) after {seconds:.0f} s.")
    return training.TrainingResult(
        lora_path=lora_path,
        losses=losses,
        evaluation_loss_before=evaluation_before,
        evaluation_loss_after=evaluation_after,
        seconds=seconds,
    )


@torch.no_grad()
def _encode(vae, pixels, device):
    """As training.encode, with the flow VAEs' shift: a latent is (z - shift) * scale."""
    encoded = training.encode(vae, pixels.to(device, vae.dtype))
    return {**encoded, "shift": vae.config.shift_factor or 0.0}


def _latents(encoded, picked, generator):
    mean, std = encoded["mean"][picked], encoded["std"][picked]
    noise = torch.randn(mean.shape, generator=generator).to(mean.device)
    return (mean + std * noise - encoded["shift"]) * encoded["scale"]


class _FlowConditioning:
    """Each training row's prompt embeddings (FLUX.1: T5's sequence, CLIP's pooled prompt and
    the text ids; SD 3.x: the joint sequence and both CLIPs' pooled prompts), and the sample
    prompt's (with SD 3.x's empty negative prompt for its CFG), encoded once."""

    def __init__(self, pipe, request, device):
        self.is_flux = pipelines.pipeline_family(pipe) == FLUX
        self.limit = t5_token_limit(pipe)
        self.device = device
        with torch.no_grad():
            self.instance = self._encode(pipe, [item.caption for item in request.images])
            self.klass = self._encode(pipe, [request.class_prompt])
            self.sample = self._encode_sample(
                pipe, request.sample_prompt or request.instance_prompt
            )

    def _encode(self, pipe, prompts):
        """(sequence, pooled) for each prompt."""
        if self.is_flux:
            states, pooled, _ = pipe.encode_prompt(
                prompt=prompts, prompt_2=None, device=self.device, max_sequence_length=self.limit
            )
            return states, pooled
        states, _, pooled, _ = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            do_classifier_free_guidance=False,
            device=self.device,
            max_sequence_length=self.limit,
        )
        return states, pooled

    def _encode_sample(self, pipe, prompt):
        """The sampling pipeline's prompt arguments, so it needs no text encoder."""
        if self.is_flux:
            states, pooled = self._encode(pipe, [prompt])
            return {"prompt_embeds": states, "pooled_prompt_embeds": pooled}
        states, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompt,
            prompt_2=None,
            prompt_3=None,
            negative_prompt="",
            do_classifier_free_guidance=True,
            device=self.device,
            max_sequence_length=self.limit,
        )
        return {
            "prompt_embeds": states,
            "pooled_prompt_embeds": pooled,
            "negative_prompt_embeds": negative,
            "negative_pooled_prompt_embeds": negative_pooled,
        }

    def rows(self, picked, class_rows=0):
        """(sequence, pooled) for the picked subject images, then `class_rows` class images."""
        states, pooled = self.instance[0][picked], self.instance[1][picked]
        if class_rows:
            states = torch.cat([states, self.klass[0].expand(class_rows, -1, -1)])
            pooled = torch.cat([pooled, self.klass[1].expand(class_rows, -1)])
        return states, pooled


def _store_frozen_transformer_in_fp8(transformer, log):
    """TrainingRequest.fp8_base: the frozen transformer's layer weights stored in fp8 (e4m3),
    each layer's cast up to the compute dtype while it runs, forward and backward (diffusers'
    layerwise casting, as the worker's WorkerConfig.fp8_transformer; its norms and embeddings
    stay as they are), before the LoRA is added, so that FLUX.1 [dev]'s 12 G parameters take
    12 GB instead of 24 GB in bf16. Done on the CPU, before the weights move to the device."""
    before = {name: parameter.nbytes for name, parameter in transformer.named_parameters()}
    transformer.enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn, compute_dtype=transformer.dtype
    )
    stored = [
        (before[name], parameter.nbytes)
        for name, parameter in transformer.named_parameters()
        if parameter.dtype == torch.float8_e4m3fn
    ]
    log(
        f"Stored the frozen transformer's layer weights in fp8: "
        f"{sum(old for old, _ in stored):,} bytes became {sum(new for _, new in stored):,} "
        f"({len(stored)} weights and biases; norms and embeddings kept as they were)."
    )


def _drop_text_encoders(pipe, device):
    """Every prompt is encoded by now: the run's private pipeline lets its text encoders go
    before the transformer trains (sampling takes embeddings)."""
    pipe.register_modules(
        **{name: None for name in pipe.components if name.startswith("text_encoder")}
    )
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _flow_loss(
    pipe, latents, conditioning, scheduler, generator, *, prior_count, prior_loss_weight
):
    """The flow-matching loss at a noise level drawn per row; with prior preservation, the
    last `prior_count` rows are class images whose loss is weighted by `prior_loss_weight`."""
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    draws = compute_density_for_timestep_sampling(
        weighting_scheme="none", batch_size=len(latents), generator=generator
    )
    indices = (draws * scheduler.config.num_train_timesteps).long()
    sigmas = scheduler.sigmas[indices].to(latents.device)
    prediction = _predict(pipe, _noisy(latents, noise, sigmas), sigmas, conditioning)
    target = noise - latents
    if not prior_count:
        return torch.nn.functional.mse_loss(prediction, target)
    instance_count = len(latents) - prior_count
    loss = torch.nn.functional.mse_loss(prediction[:instance_count], target[:instance_count])
    prior = torch.nn.functional.mse_loss(prediction[instance_count:], target[instance_count:])
    return loss + prior_loss_weight * prior


def _noisy(latents, noise, sigmas):
    sigmas = sigmas.view(-1, 1, 1, 1)
    return (1.0 - sigmas) * latents + sigmas * noise


def _predict(pipe, noisy, sigmas, conditioning):
    """The transformer's velocity for `noisy` latents at noise levels `sigmas`, unpacked."""
    transformer = pipe.transformer
    dtype = transformer.dtype
    states, pooled = (value.to(dtype) for value in conditioning)
    batch, channels, height, width = noisy.shape
    if pipelines.pipeline_family(pipe) != FLUX:
        return transformer(
            hidden_states=noisy.to(dtype),
            timestep=sigmas * 1000,  # the scheduler's timesteps: sigma × 1000
            encoder_hidden_states=states,
            pooled_projections=pooled,
            return_dict=False,
        )[0].float()
    packed = FluxPipeline._pack_latents(noisy.to(dtype), batch, channels, height, width)
    image_ids = FluxPipeline._prepare_latent_image_ids(
        batch, height // 2, width // 2, noisy.device, dtype
    )
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full([batch], FLUX_TRAINING_GUIDANCE, device=noisy.device)
    prediction = transformer(
        hidden_states=packed,
        timestep=sigmas,  # FLUX.1's transformer takes timestep / 1000
        guidance=guidance,
        pooled_projections=pooled,
        encoder_hidden_states=states,
        # FluxPipeline.encode_prompt's text ids: zeros, a row per text token.
        txt_ids=torch.zeros(states.shape[1], 3, device=noisy.device, dtype=dtype),
        img_ids=image_ids,
        return_dict=False,
    )[0]
    scale = pipe.vae_scale_factor
    return FluxPipeline._unpack_latents(prediction, height * scale, width * scale, scale).float()


def _evaluation_batch(encoded, seed):
    """Fixed latents (the distributions' means), noise and noise levels for every image."""
    generator = torch.Generator().manual_seed(seed + 7919)
    latents = (encoded["mean"] - encoded["shift"]) * encoded["scale"]
    rows = []
    for sigma in EVALUATION_SIGMAS:
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        rows.append((torch.full((len(latents),), sigma, device=latents.device), noise))
    return latents, rows


@torch.no_grad()
def _evaluation_loss(pipe, conditioning, evaluation, autocast):
    latents, rows = evaluation
    pipe.transformer.eval()
    rows_conditioning = conditioning.rows(torch.arange(len(latents)))
    total = 0.0
    with autocast:
        for sigmas, noise in rows:
            prediction = _predict(pipe, _noisy(latents, noise, sigmas), sigmas, rows_conditioning)
            total += float(torch.nn.functional.mse_loss(prediction, noise - latents))
    return total / len(rows)


@torch.no_grad()
def _sample(pipe, request, conditioning, device):
    """An image of the fixed sample prompt with the fixed seed, with the LoRA so far."""
    pipe.transformer.eval()
    return pipe(
        **conditioning.sample,
        num_inference_steps=request.sample_steps,
        guidance_scale=SAMPLE_GUIDANCE[pipelines.pipeline_family(pipe)],
        width=request.resolution,
        height=request.resolution,
        generator=torch.Generator(device).manual_seed(request.seed),
    ).images[0]


def _save_lora(pipe, request):
    """The adapters in diffusers' layout ("transformer.<module>.lora_A.weight"), which
    FluxPipeline / StableDiffusion3Pipeline.load_lora_weights read, with the run's facts
    in the header."""
    folder, path = training.lora_folder()
    type(pipe).save_lora_weights(
        folder,
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        safe_serialization=True,
    )
    metadata = dict(request.metadata)
    if pipelines.pipeline_family(pipe) == pipelines.SD3:
        metadata["ss_base_model_version"] = kohya_sd3_version(pipe.transformer.config)
    training.write_metadata(path, request, metadata)
    return str(path)


def kohya_sd3_version(config):
    """kohya sd-scripts' ss_base_model_version for an SD 3.x transformer: the model_type its
    library/sd3_utils.py reads from the weights ("5-large" with q/k norms, "5-medium" with
    them and dual-attention layers, "medium" for SD3 Medium, without)."""
    if not config.get("qk_norm"):
        return "medium"
    return "5-medium" if config.get("dual_attention_layers") else "5-large"
