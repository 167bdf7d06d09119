"""Plain data passed between the studio and the workers. No torch here: web code imports it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationRequest:
    model_source: str  # Hub id ("runwayml/stable-diffusion-v1-5") or local diffusers folder path
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    seed: int
    # diffusers scheduler class name, e.g. "EulerAncestralDiscreteScheduler"; None: the one the
    # model ships with.
    scheduler: str | None = None


@dataclass(frozen=True)
class GenerationResult:
    images: list  # list[PIL.Image.Image], RGB
    seed: int
    sampler: str  # A1111 sampler name of the scheduler used, e.g. "Euler"
    scheduler_class: str  # e.g. "EulerDiscreteScheduler"
    elapsed_s: float  # time its batch ran, from start to decoded images (queue wait excluded)
    batch_size: int = 1  # requests that ran together with this one, itself included


class GenerationCanceled(Exception):
    """The caller asked to stop; the run ended early and produced no image."""


class GenerationFailed(Exception):
    """The worker could not make the image; the message says why and what to try."""


class WorkerShuttingDown(GenerationFailed):
    """The worker stopped before this request started running; it can run elsewhere."""
