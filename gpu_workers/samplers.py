"""The schedulers a request may name, and the sampler names AUTOMATIC1111 shows for them."""

import diffusers
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# diffusers scheduler class → the sampler name AUTOMATIC1111 shows (and writes in infotext).
A1111_SAMPLER_NAMES = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "UniPCMultistepScheduler": "UniPC",
    "LMSDiscreteScheduler": "LMS",
    "HeunDiscreteScheduler": "Heun",
}


def a1111_sampler_name(scheduler_class: str) -> str:
    return A1111_SAMPLER_NAMES.get(scheduler_class, scheduler_class)


def fresh_scheduler(pipe: DiffusionPipeline, name: str | None) -> SchedulerMixin:
    """A new scheduler for one run, built from the model's scheduler config.

    Schedulers keep per-run state (step index, multistep history), so runs never share one.
    `name` is a class from A1111_SAMPLER_NAMES; None keeps the model's own class.
    """
    scheduler_class = type(pipe.scheduler) if name is None else getattr(diffusers, name)
    return scheduler_class.from_config(pipe.scheduler.config)
