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
        "train_text_encoder": False, "prior_preservation": False,
    },
    "balanced": {
        "label": "Balanced",
        "steps": 800, "learning_rate": 1e-4, "rank": 8, "batch_size": 1,
        "train_text_encoder": False, "prior_preservation": True,
    },
    "high_quality": {
        "label": "High quality",
        "steps": 1500, "learning_rate": 5e-5, "rank": 16, "batch_size": 2,
        "train_text_encoder": True, "prior_preservation": True,
    },
}
PRESET_FIELDS = (
    "steps", "learning_rate", "rank", "batch_size", "train_text_encoder", "prior_preservation"
)


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


def estimate(*, family, resolution, steps, batch_size, rank, train_text_encoder,
             prior_preservation, class_images, samples):
    """Memory and time a run needs on a reference GPU; unknown families count as SD 1.x."""
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


def sample_count(steps, sample_every):
    """Samples a run makes: every `sample_every` steps, and always one at the end."""
    if sample_every <= 0:
        return 1
    return steps // sample_every + (0 if steps % sample_every == 0 else 1)
