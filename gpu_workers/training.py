"""DreamBooth-LoRA training on a worker, after diffusers' examples/dreambooth/
train_dreambooth_lora.py (and _sdxl.py): LoRA adapters (peft) on the UNet's attention
projections (and optionally SD 1.x/2.x's text encoder's), the noise-prediction loss on the
subject's images, with optional prior preservation on class images this worker generates
first. SDXL conditions on its pooled prompt and size ids as its pipeline does. FLUX.1 and
SD 3.x train their transformer in `gpu_workers.flow_training`, under the same contract.

The result is a `.safetensors` file in diffusers' LoRA layout, which the studio's LoRA
library and `gpu_workers.loras` load like any uploaded LoRA.
"""

import gc
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from gpu_workers import pipelines
from gpu_workers.config import WorkerConfig
from gpu_workers.training_plan import (
    TrainingCanceled,
    TrainingFailed,
    TrainingRequest,
)

logger = logging.getLogger(__name__)

UNET_TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_ENCODER_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj"]
# The loss on the subject's images at these noise levels with fixed noise: a measure of
# how well the LoRA learned them that, unlike the training loss, is not noisy.
EVALUATION_TIMESTEPS = (100, 300, 500, 700, 900)
SAMPLE_GUIDANCE = 7.0
LORA_FILE_NAME = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class TrainingResult:
    lora_path: str  # in a temporary folder: the caller stores it and removes the folder
    losses: list  # the training loss at every step
    evaluation_loss_before: float
    evaluation_loss_after: float
    seconds: float


def train_dreambooth_lora(
    request: TrainingRequest,
    *,
    config: WorkerConfig | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    on_sample: Callable[[int, object], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train a LoRA for `request` on this worker's device.

    `on_step(step, total, loss)` after every optimisation step, `on_sample(step, image)`
    with each sample image, `on_log(line)` with what a user reads in the run's log; all run
    on the calling thread. `should_cancel()` is asked before every step and class image;
    True stops the run with TrainingCanceled.
    """
    config = config or WorkerConfig.from_env()
    try:
        return _train(request, config, on_step, on_sample, on_log, should_cancel)
    finally:
        # The run's private copy of the model is gone: give its memory back to the
        # generation cache sharing this GPU.
        gc.collect()
        if config.device.startswith("cuda"):
            torch.cuda.empty_cache()


def _train(request, config, on_step, on_sample, on_log, should_cancel):
    from gpu_workers import flow_training  # which imports this module

    log = on_log or (lambda line: None)
    cancel = should_cancel or (lambda: False)
    started = time.monotonic()
    device = torch.device(config.device)
    generator = torch.Generator().manual_seed(request.seed)

    if pipelines.model_family(request.model_source) in pipelines.FLOW_FAMILIES:
        config = flow_training.training_config(config)
    log(f"Loading {request.model_source} on {config.device}.")
    # A private copy, outside the generation cache: training adds adapters to its weights.
    pipe = pipelines._load(request.model_source, config, request.model_config)
    family = pipelines.pipeline_family(pipe)
    if request.train_text_encoder and family != pipelines.SD:
        raise TrainingFailed(
            f"Training {pipelines.FAMILY_NAMES[family]}'s text encoders is not supported: "
            "untick “Train the text encoder”."
        )
    if request.fp8_base and family not in pipelines.FLOW_FAMILIES:
        raise TrainingFailed(
            f"FP8 base weights are for FLUX.1 and SD 3.x models, not "
            f"{pipelines.FAMILY_NAMES[family]}'s: untick “FP8 base weights”."
        )
    if family in pipelines.FLOW_FAMILIES:
        callbacks = {"on_step": on_step, "on_sample": on_sample, "log": log, "cancel": cancel}
        return flow_training.train_flow_lora(pipe, request, device, started, **callbacks)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    for model in pipe.components.values():
        if isinstance(model, torch.nn.Module):
            model.requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    class_images = []
    if request.prior_preservation and request.class_images:
        class_images = generate_class_images(pipe, request, device, log, cancel)

    weight_dtype = next(unet.parameters()).dtype
    autocast = torch.autocast(
        device.type, dtype=weight_dtype, enabled=weight_dtype != torch.float32
    )
    instance_pixels = pixels([item.image for item in request.images]).to(device, weight_dtype)
    class_pixels = pixels(class_images).to(device, weight_dtype) if class_images else None
    with torch.no_grad():
        instance_latents = encode(vae, instance_pixels)
        class_latents = encode(vae, class_pixels) if class_pixels is not None else None
    conditioning = _Conditioning(pipe, request, device)

    evaluation = _evaluation_batch(instance_latents, noise_scheduler, request.seed)
    evaluation_before = _evaluation_loss(pipe, conditioning, evaluation, noise_scheduler, autocast)
    log(f"Loss on the subject's images before training (fixed noise): {evaluation_before:.4f}.")

    unet.add_adapter(
        LoraConfig(
            r=request.rank,
            lora_alpha=request.rank,
            init_lora_weights="gaussian",
            target_modules=UNET_TARGET_MODULES,
        )
    )
    trained = [unet]
    if request.train_text_encoder:
        # peft itself, not transformers' add_adapter, which asks for a newer peft.
        inject_adapter_in_model(
            LoraConfig(
                r=request.rank,
                lora_alpha=request.rank,
                init_lora_weights="gaussian",
                target_modules=TEXT_ENCODER_TARGET_MODULES,
            ),
            text_encoder,
        )
        trained.append(text_encoder)
    # LoRA weights train in fp32 even when the frozen model runs in half precision.
    cast_training_params(trained, dtype=torch.float32)
    parameters = [p for model in trained for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=request.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
    )
    scaler = torch.amp.GradScaler(device.type, enabled=weight_dtype == torch.float16)
    log(
        f"Training {sum(p.numel() for p in parameters):,} LoRA parameters (rank {request.rank}"
        f"{', text encoder too' if request.train_text_encoder else ''}) for {request.steps} "
        f"steps on {len(request.images)} images at {request.resolution}px."
    )

    order = batches(len(request.images), request.batch_size, generator)
    losses = []
    for step in range(1, request.steps + 1):
        if cancel():
            raise TrainingCanceled(f"Canceled at step {step - 1} of {request.steps}.")
        for model in trained:
            model.train()
        picked = next(order)
        latents = _sample_latents(instance_latents, picked, generator)
        prior_count = len(picked) if class_latents is not None else 0
        if prior_count:
            class_picked = torch.randint(len(class_images), (prior_count,), generator=generator)
            latents = torch.cat([latents, _sample_latents(class_latents, class_picked, generator)])
        states, added = conditioning.rows(picked, class_rows=prior_count)
        with autocast:
            loss = _diffusion_loss(
                unet, latents, states, added, noise_scheduler, generator,
                prior_count=prior_count,
                prior_loss_weight=request.prior_loss_weight,
            )
        value = optimizer_step(loss, step, request, scaler, optimizer, parameters)
        losses.append(value)
        if on_step:
            on_step(step, request.steps, value)
        is_sample_step = request.sample_every and step % request.sample_every == 0
        if on_sample and (is_sample_step or step == request.steps):
            on_sample(step, _sample(pipe, request, device))

    evaluation_after = _evaluation_loss(pipe, conditioning, evaluation, noise_scheduler, autocast)
    log(f"Loss on the subject's images after training (fixed noise): {evaluation_after:.4f}.")
    lora_path = _save_lora(pipe, request)
    seconds = time.monotonic() - started
    log(f"Saved the LoRA ({Path(lora_path).stat().st_size:,} bytes) after {seconds:.0f} s.")
    return TrainingResult(
        lora_path=lora_path,
        losses=losses,
        evaluation_loss_before=evaluation_before,
        evaluation_loss_after=evaluation_after,
        seconds=seconds,
    )


def optimizer_step(loss, step, request, scaler, optimizer, parameters):
    """Backward, the gradients clipped to a norm of 1 (as diffusers' DreamBooth scripts),
    one optimizer step; returns the loss as a number (_checked_loss)."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return _checked_loss(loss, step, request)


def _checked_loss(loss, step, request):
    """The step's loss as a number; a run whose loss is no longer finite stops."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrainingFailed(
            f"The loss became {value} at step {step}: the learning rate "
            f"{request.learning_rate:g} is too high for this model. Try a lower one."
        )
    return value


def generate_class_images(pipe, request, device, log, cancel, *, guidance_scale=SAMPLE_GUIDANCE):
    """Prior preservation's class images ("a photo of dog"), made by the base model before
    any adapter is added."""
    log(f"Generating {request.class_images} class images for “{request.class_prompt}”.")
    images = []
    for n in range(request.class_images):
        if cancel():
            raise TrainingCanceled(f"Canceled while generating class image {n + 1}.")
        images.append(
            pipe(
                request.class_prompt,
                num_inference_steps=request.sample_steps,
                guidance_scale=guidance_scale,
                width=request.resolution,
                height=request.resolution,
                generator=torch.Generator(device).manual_seed(request.seed + 1 + n),
            ).images[0]
        )
        log(f"Class image {n + 1} of {request.class_images} made.")
    return images


def pixels(images):
    """PIL images as one tensor scaled to -1..1, the VAE's input."""
    arrays = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1.0


def encode(vae, pixels):
    """The VAE's latent distribution of each image: the VAE is frozen, so it is encoded
    once and a latent drawn from it at every step, as encoding every step would."""
    dtype = vae.dtype
    if vae.config.get("force_upcast") and dtype == torch.float16:
        vae.to(torch.float32)  # SDXL's VAE overflows in fp16, as its pipelines know
        distribution = vae.encode(pixels.float()).latent_dist
        vae.to(dtype)
    else:
        distribution = vae.encode(pixels).latent_dist
    return {
        "mean": distribution.mean.float(),
        "std": distribution.std.float(),
        "scale": vae.config.scaling_factor,
    }


def _sample_latents(encoded, picked, generator):
    mean, std = encoded["mean"][picked], encoded["std"][picked]
    noise = torch.randn(mean.shape, generator=generator).to(mean.device)
    return (mean + std * noise) * encoded["scale"]


def _token_ids(tokenizer, prompts):
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


class _Conditioning:
    """What conditions each training row on its prompt: the CLIP hidden states, plus for
    SDXL the pooled prompt and the size ids. Encoded once while the text encoders are
    frozen; at every use when the text encoder trains."""

    def __init__(self, pipe, request, device):
        self.pipe, self.device = pipe, device
        self.is_xl = pipelines.pipeline_family(pipe) == pipelines.SDXL
        self.trains_text = request.train_text_encoder
        self.captions = [item.caption for item in request.images]
        self.class_prompt = request.class_prompt
        size = request.resolution
        # SDXL's micro-conditioning: original size, crop's top left, target size.
        self.time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=device)
        if not self.trains_text:
            with torch.no_grad():
                self.instance = self._encode(self.captions)
                self.klass = self._encode([self.class_prompt])

    def _encode(self, prompts):
        """(hidden states, pooled prompt or None) for each prompt."""
        if self.is_xl:
            states, _, pooled, _ = self.pipe.encode_prompt(
                prompts, device=self.device, num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
            return states, pooled
        ids = _token_ids(self.pipe.tokenizer, prompts).to(self.device)
        return self.pipe.text_encoder(ids)[0], None

    def rows(self, picked, class_rows=0):
        """States and the UNet's added conditioning (None but for SDXL) for the picked
        subject images, then `class_rows` class images."""
        if self.trains_text:
            states, pooled = self._encode([self.captions[int(n)] for n in picked])
            klass = self._encode([self.class_prompt]) if class_rows else None
        else:
            states = self.instance[0][picked]
            pooled = None if self.instance[1] is None else self.instance[1][picked]
            klass = self.klass
        if class_rows:
            states = torch.cat([states, klass[0].expand(class_rows, -1, -1)])
            if pooled is not None:
                pooled = torch.cat([pooled, klass[1].expand(class_rows, -1)])
        if pooled is None:
            return states, None
        return states, {"text_embeds": pooled, "time_ids": self.time_ids.expand(len(states), -1)}


def batches(count, batch_size, generator):
    """Image indices for each step: shuffled passes over the images, batch_size a step."""
    pending = []
    while True:
        while len(pending) < batch_size:
            pending.extend(torch.randperm(count, generator=generator).tolist())
        picked, pending = pending[:batch_size], pending[batch_size:]
        yield torch.tensor(picked)


def _diffusion_loss(unet, latents, states, added, scheduler, generator, *, prior_count,
                    prior_loss_weight):
    """The DreamBooth loss: predict the noise (or velocity) added at a random timestep;
    with prior preservation, the last `prior_count` rows are class images whose loss is
    weighted by `prior_loss_weight`."""
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    timesteps = torch.randint(
        scheduler.config.num_train_timesteps, (len(latents),), generator=generator
    ).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = _predict(unet, noisy, timesteps, states, added)
    target = _target(scheduler, latents, noise, timesteps)
    if not prior_count:
        return F.mse_loss(prediction, target)
    instance_count = len(latents) - prior_count
    loss = F.mse_loss(prediction[:instance_count], target[:instance_count])
    prior = F.mse_loss(prediction[instance_count:], target[instance_count:])
    return loss + prior_loss_weight * prior


def _predict(unet, noisy, timesteps, states, added):
    dtype = next(unet.parameters()).dtype
    if added is not None:
        added = {name: value.to(dtype) for name, value in added.items()}
    return unet(
        noisy.to(dtype), timesteps, states.to(dtype), added_cond_kwargs=added
    ).sample.float()


def _target(scheduler, latents, noise, timesteps):
    if scheduler.config.prediction_type == "v_prediction":  # SD 2.x 768
        return scheduler.get_velocity(latents, noise, timesteps)
    return noise


def _evaluation_batch(encoded, scheduler, seed):
    """Fixed latents (the distributions' means), noise and timesteps for every image."""
    generator = torch.Generator().manual_seed(seed + 7919)
    latents = encoded["mean"] * encoded["scale"]
    rows = []
    for timestep in EVALUATION_TIMESTEPS:
        timestep = min(timestep, scheduler.config.num_train_timesteps - 1)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        rows.append((torch.full((len(latents),), timestep, device=latents.device), noise))
    return latents, rows


@torch.no_grad()
def _evaluation_loss(pipe, conditioning, evaluation, scheduler, autocast):
    latents, rows = evaluation
    pipe.unet.eval()
    pipe.text_encoder.eval()
    states, added = conditioning.rows(torch.arange(len(latents)))
    total = 0.0
    with autocast:
        for timesteps, noise in rows:
            noisy = scheduler.add_noise(latents, noise, timesteps)
            prediction = _predict(pipe.unet, noisy, timesteps, states, added)
            total += float(F.mse_loss(prediction, _target(scheduler, latents, noise, timesteps)))
    return total / len(rows)


@torch.no_grad()
def _sample(pipe, request, device):
    """An image of the fixed sample prompt with the fixed seed, with the LoRA so far."""
    pipe.unet.eval()
    pipe.text_encoder.eval()
    return pipe(
        request.sample_prompt or request.instance_prompt,
        num_inference_steps=request.sample_steps,
        guidance_scale=SAMPLE_GUIDANCE,
        width=request.resolution,
        height=request.resolution,
        generator=torch.Generator(device).manual_seed(request.seed),
    ).images[0]


def _save_lora(pipe, request):
    """The adapters in diffusers' LoRA layout, with the run's facts in the header (kohya's
    ss_* names, which the library reads: rank, resolution, trigger phrase)."""
    folder, path = lora_folder()
    layers = {
        "unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    }
    if request.train_text_encoder:
        layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.text_encoder)
        )
    type(pipe).save_lora_weights(folder, safe_serialization=True, **layers)
    write_metadata(path, request, request.metadata)
    return str(path)


def lora_folder():
    """A temporary folder for the LoRA file, and the file's path in it."""
    folder = Path(tempfile.mkdtemp(prefix="studio-training-"))
    return folder, folder / LORA_FILE_NAME


def write_metadata(path, request, metadata):
    """The run's facts (and `metadata`) into the saved file's header."""
    header = {
        "ss_network_dim": str(request.rank),
        "ss_network_alpha": str(request.rank),
        "ss_resolution": f"({request.resolution}, {request.resolution})",
        "ss_max_train_steps": str(request.steps),
        "ss_learning_rate": f"{request.learning_rate:g}",
        "ss_seed": str(request.seed),
        "ss_num_train_images": str(len(request.images)),
        "ss_training_comment": "DreamBooth-LoRA trained in the studio",
        **{key: str(value) for key, value in metadata.items()},
    }
    save_file(load_file(path), path, metadata={"format": "pt", **header})
