"""What a DreamBooth-LoRA training run is asked to do, its presets and its cost estimate.

Plain data, no torch: web nodes import it to validate a run and show its estimate before
it starts; `gpu_workers.training` runs it.
"""

from dataclasses import dataclass, field

MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024
MAX_STEPS = 5000
MAX_RANK = 128
MAX_BATCH_SIZE = 8
MIN_LEARNING_RATE, MAX_LEARNING_RATE = 1e-6, 1e-2

# DreamBooth-LoRA settings as kohya's and diffusers' guides suggest for 5-20 images.
PRESETS = {
    "quick": {
        "label": "Quick",
        "steps": 400, "learning_rate": 1e-4, "rank": 4, "batch_size": 1,
        "train_text_encoder": False, "prior_preservation": False, "fp8_base": False,
    },
    "balanced": {
        "label": "Balanced",
        "steps": 800, "learning_rate": 1e-4, "rank": 8, "batch_size": 1,
        "train_text_encoder": False, "prior_preservation": True, "fp8_base": False,
    },
    "high_quality": {
        "label": "High quality",
        "steps": 1500, "learning_rate": 5e-5, "rank": 16, "batch_size": 2,
        "train_text_encoder": True, "prior_preservation": True, "fp8_base": False,
    },
}
PRESET_FIELDS = (
    "steps", "learning_rate", "rank", "batch_size", "train_text_encoder", "prior_preservation",
    "fp8_base",
)


def _flow_preset(label, steps, rank, batch_size, fp8_base=False):
    return {
        "label": label, "steps": steps, "learning_rate": 1e-4, "rank": rank,
        "batch_size": batch_size, "train_text_encoder": False, "prior_preservation": False,
        "fp8_base": fp8_base,
    }


# FLUX.1's and SD 3.x's presets, under SD's names (a run records the name): learning rate
# 1e-4 and 500-2000 steps as diffusers' README_flux.md / README_sd3.md and ai-toolkit's
# config/examples/train_lora_flux_24gb.yaml and train_lora_sd35_large_24gb.yaml (rank 16,
# batch 1, 2000 steps) use. Sized with `estimate` at 1024 px: SD 3.5 Large's Quick and
# Balanced fit a 24 GB GPU (~18 GB), its High quality (batch 4, ~23 GB) wants an 80 GB one;
# FLUX.1 [dev]'s transformer alone is 24 GB in bf16, so its Quick, Balanced and High quality
# (~26-30 GB) are for an 80 GB GPU, and its "24 GB (fp8)" stores the frozen transformer in
# fp8 (~16 GB), as ai-toolkit's train_lora_flux_24gb.yaml quantizes it to 8 bits
# (`quantize: true`) with that example's rank 16, batch 1 and 2000 steps.
FLOW_PRESETS = {
    "flux1": {
        "quick": _flow_preset("Quick", 500, 8, 1),
        "balanced": _flow_preset("Balanced", 1000, 16, 1),
        "high_quality": _flow_preset("High quality", 2000, 32, 2),
        "fp8_24gb": _flow_preset("24 GB (fp8)", 2000, 16, 1, fp8_base=True),
    },
    "sd3": {
        "quick": _flow_preset("Quick", 500, 8, 1),
        "balanced": _flow_preset("Balanced", 1000, 16, 1),
        "high_quality": _flow_preset("High quality", 2000, 32, 4),
    },
}
PRESET_NOTES = {
    "flux1": "FLUX.1 [dev]'s transformer alone takes 24 GB in bf16: Quick, Balanced and High "
    "quality need a larger GPU (about 26-30 GB at 1024 px by the estimate; a 40-80 GB one "
    "leaves headroom); 24 GB (fp8) stores it in fp8 and fits a 24 GB GPU (about 16 GB). Its "
    "text encoders are not trained.",
    "sd3": "SD 3.5 Large at 1024 px: Quick and Balanced fit a 24 GB GPU (about 18 GB), "
    "High quality (batch 4, about 23 GB) is for an 80 GB one; SD 3.5 Medium's smaller "
    "transformer needs less. Its text encoders are not trained.",
}


def presets_for(family):
    """The presets a model of `family` trains with: its own for FLUX.1 and SD 3.x, SD's
    for the rest."""
    return FLOW_PRESETS.get(family, PRESETS)


# Every preset's name and label, whichever families have it (a run records the name).
PRESET_LABELS = {
    name: preset["label"]
    for presets in (PRESETS, *FLOW_PRESETS.values())
    for name, preset in presets.items()
}
FP8_BASE_FAMILIES = frozenset(FLOW_PRESETS)  # whose transformer training can store in fp8


class TrainingCanceled(Exception):
    """The run's owner canceled it; it stopped at its next step."""


class TrainingFailed(Exception):
    """The run can't go on; the message says why and what to do."""


@dataclass(frozen=True)
class TrainingImage:
    image: object  # PIL RGB, square, resolution x resolution (cropped by the studio)
    caption: str  # the instance prompt, or the image's own caption with the token in it


@dataclass(frozen=True)
class TrainingRequest:
    model_source: str
    images: tuple  # TrainingImage items
    instance_prompt: str  # "a photo of sks dog": what an uncaptioned image is called
    class_prompt: str  # "a photo of dog": prior preservation's class images
    resolution: int
    steps: int
    learning_rate: float
    rank: int
    batch_size: int
    seed: int
    model_config: str | None = None
    train_text_encoder: bool = False
    prior_preservation: bool = False
    class_images: int = 0  # prior preservation: generated before training starts
    prior_loss_weight: float = 1.0
    # A sample with `sample_prompt` every `sample_every` steps (and at the end); 0: at the end
    sample_prompt: str = ""
    sample_every: int = 0
    sample_steps: int = 20
    # FLUX.1 / SD 3.x: the frozen transformer's weights stored in fp8 (gpu_workers.flow_training)
    fp8_base: bool = False
    metadata: dict = field(default_factory=dict)  # written into the LoRA file's header


@dataclass(frozen=True)
class TrainingEstimate:
    memory_bytes: int
    seconds: float

    def memory_label(self):
        return f"{self.memory_bytes / 1024**3:.1f} GB"

    def duration_label(self):
        return duration_label(self.seconds)


def duration_label(seconds):
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


# Rough reference figures for one 80 GB datacenter GPU (A100/H100 class) in fp16 with PyTorch
# attention: the frozen weights, the activations one 512x512 image needs for a training
# step, and the time of such a step. Activations and time grow with the pixels.
_FAMILY_COSTS = {
    "sd15": {"weights": 2.2e9, "activations": 3.0e9, "step_s": 0.12, "text_encoder": 0.25e9},
    "sd2": {"weights": 2.6e9, "activations": 3.4e9, "step_s": 0.14, "text_encoder": 0.7e9},
    "sdxl": {"weights": 7.0e9, "activations": 3.2e9, "step_s": 0.22, "text_encoder": 0.0},
}
_CLASS_IMAGE_S = 1.2  # one class image, 25 steps at 512x512
_SAMPLE_S = 1.0  # one sample image
_LOAD_S = 20  # loading the model


# FLUX.1 [dev] and SD 3.5 Large (SD 3.x's figures: Medium's 2.5 G-parameter transformer
# needs less memory and time) in bf16 on the same GPU, as
# gpu_workers.flow_training runs them: text encoders on the device first, then the
# transformer (with prior preservation, the whole pipeline at once for the class images).
# Not measured (no GPU was lent when they were written): weights from the parameter counts
# (transformer 11.9 G / 8.1 G, T5 v1.1 XXL 4.76 G + CLIP-L 0.12 G (+ bigG 0.69 G), VAE 84 M);
# activations per 1024x1024 image under gradient checkpointing from the transformer's widths
# (each block's input kept, one block recomputed at a time); a step's time from its FLOPs
# (2 x parameters x 4.6 k / 4.4 k tokens, x4 for recomputation and backward) at 40% of a
# 400 TFLOP/s bf16 peak; a sample or class image is 20 transformer calls (SD 3.x: two rows,
# CFG) at 1024 px; loading reads the bf16 weights from local disk. LoRA parameters per unit
# of rank: the attention projections the studio trains (266 FLUX.1, 304 SD 3.5 Large
# linears of width 3072 / 2432). With fp8 base weights the transformer counts 1 byte a
# parameter, plus one block's weights cast up to bf16 while gradient checkpointing recomputes
# it (FLUX.1's dual-stream block ~340 M parameters, SD 3.5 Large's ~215 M); the casts' time
# (~0.1 TB of memory traffic a step) is left out beside a step's 2-3 s.
_FLOW_COSTS = {
    "flux1": {
        "transformer": 23.8e9, "text_encoders": 9.8e9, "activations": 3.0e9,
        "lora_per_rank": 1.63e6, "step_s": 2.7, "sample_s": 14, "load_s": 60, "block": 0.68e9,
    },
    "sd3": {
        "transformer": 16.2e9, "text_encoders": 11.1e9, "activations": 1.7e9,
        "lora_per_rank": 1.48e6, "step_s": 1.8, "sample_s": 18, "load_s": 50, "block": 0.43e9,
    },
}
_FLOW_VAE = 0.17e9


def estimate(*, family, resolution, steps, batch_size, rank, train_text_encoder,
             prior_preservation, class_images, samples, fp8_base=False):
    """Memory and time a run needs on a reference GPU; unknown families count as SD 1.x.
    `fp8_base` (FLUX.1 and SD 3.x only) stores the frozen transformer in fp8."""
    if family in _FLOW_COSTS:
        return _flow_estimate(
            _FLOW_COSTS[family], resolution=resolution, steps=steps, batch_size=batch_size,
            rank=rank, prior_preservation=prior_preservation, class_images=class_images,
            samples=samples, fp8_base=fp8_base,
        )
    costs = _FAMILY_COSTS.get(family, _FAMILY_COSTS["sd15"])
    pixels = (resolution / 512) ** 2
    # Prior preservation trains on a class image beside each subject image.
    images_per_step = batch_size * (2 if prior_preservation else 1)
    lora_params = rank * 1.6e6  # the attention layers' LoRA matrices, per unit of rank
    memory = (
        costs["weights"]
        + costs["activations"] * pixels * images_per_step
        + lora_params * 16  # fp32 weights, gradients and Adam's two moments
        + (costs["text_encoder"] if train_text_encoder else 0)
        + 1.0e9  # CUDA context and allocator slack
    )
    step_s = costs["step_s"] * pixels * images_per_step * (1.2 if train_text_encoder else 1)
    seconds = (
        _LOAD_S
        + steps * step_s
        + class_images * _CLASS_IMAGE_S * pixels
        + samples * _SAMPLE_S * pixels
    )
    return TrainingEstimate(memory_bytes=int(memory), seconds=seconds)


def _flow_estimate(costs, *, resolution, steps, batch_size, rank, prior_preservation,
                   class_images, samples, fp8_base):
    """The larger of the two phases' memory (prompts encoded; transformer trained), and the
    time; flow families never train their text encoders."""
    pixels = (resolution / 1024) ** 2
    images_per_step = batch_size * (2 if prior_preservation else 1)
    slack = 1.0e9  # CUDA context and allocator slack
    transformer = costs["transformer"] / 2 + costs["block"] if fp8_base else costs["transformer"]
    encoding = costs["text_encoders"] + _FLOW_VAE + slack
    if prior_preservation:
        encoding += transformer + 0.5e9 * pixels  # generating the class images
    training = (
        transformer
        + _FLOW_VAE
        + costs["activations"] * pixels * images_per_step
        + rank * costs["lora_per_rank"] * 16  # fp32 weights, gradients and Adam's moments
        + slack
    )
    seconds = (
        costs["load_s"]
        + steps * costs["step_s"] * pixels * images_per_step
        + (class_images + samples) * costs["sample_s"] * pixels
    )
    return TrainingEstimate(memory_bytes=int(max(encoding, training)), seconds=seconds)


def sample_count(steps, sample_every):
    """Samples a run makes: every `sample_every` steps, and always one at the end."""
    if sample_every <= 0:
        return 1
    return steps // sample_every + (0 if steps % sample_every == 0 else 1)
