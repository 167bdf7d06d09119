"""The choices of models and jobs (families, kinds, statuses, modes), apart from the models
so that the domain packages' models can use them while generation/models.py imports those
packages' models."""

from django.db import models

from gpu_workers.samplers import FLOW_SAMPLERS


class ModelFamily(models.TextChoices):
    SD15 = "sd15", "Stable Diffusion 1.x"
    SD2 = "sd2", "Stable Diffusion 2.x"
    SDXL = "sdxl", "Stable Diffusion XL"
    # Diffusion transformers with flow matching (issue #17); the values are
    # gpu_workers.checkpoints' architecture names.
    FLUX1 = "flux1", "FLUX.1"
    SD3 = "sd3", "Stable Diffusion 3.x"


# Families the studio's workers can generate with; the library may hold others already.
GENERATION_FAMILIES = (
    ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL, ModelFamily.FLUX1, ModelFamily.SD3
)
# The flow-matching families (diffusion transformers), whose schedule has a shift.
FLOW_FAMILIES = (ModelFamily.FLUX1, ModelFamily.SD3)
# They run the flow samplers (gpu_workers.flow, or the model default) and make sides that
# are multiples of 16 (the VAE's 8 × the transformer's 2×2 patches).
FLOW_SAMPLER_NAMES = tuple(FLOW_SAMPLERS)
FLOW_SIZE_MULTIPLE = 16


class ModelKind(models.TextChoices):
    CHECKPOINT = "checkpoint", "Checkpoint"
    CONTROLNET = "controlnet", "ControlNet"
    IP_ADAPTER = "ip_adapter", "IP-Adapter"


class FluxTransformer(models.TextChoices):
    """What a FLUX.1 checkpoint's transformer reads beside its latents, told by its input
    width when the model is saved (generation.library.sources.flux_transformer)."""

    STANDARD = "", "Standard"
    FILL = "fill", "FLUX.1 Fill (inpaints and outpaints)"
    CONTROL = "control", "FLUX.1 Depth / Canny (follows a control image)"


class SourceKind(models.TextChoices):
    HUB = "hub", "Hugging Face Hub id"
    FOLDER = "folder", "Diffusers folder"
    FILE = "file", "Single .safetensors file"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


class JobMode(models.TextChoices):
    TXT2IMG = "txt2img", "Text to image"
    IMG2IMG = "img2img", "Image to image"
    INPAINT = "inpaint", "Inpaint"
    OUTPAINT = "outpaint", "Outpaint"


class JobPriority(models.IntegerChoices):
    NORMAL = 0, "Normal"
    HIGH = 1, "High"
    URGENT = 2, "Urgent"
