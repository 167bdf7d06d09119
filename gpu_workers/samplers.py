"""Samplers by the names AUTOMATIC1111 users know, and the diffusers schedulers behind them.

The mapping follows diffusers' own table (docs: api/schedulers/overview). A1111 since 1.9
writes a "Karras" sampler as the sampler plus "Schedule type: Karras" in its infotext.
Importing this module does not import torch: web nodes list the names in their forms.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sampler:
    name: str  # as A1111 lists it, e.g. "DPM++ 2M Karras"
    scheduler_class: str  # diffusers class name
    config: dict = field(default_factory=dict)  # overrides on the model's scheduler config
    schedule_type: str | None = None  # A1111's "Schedule type", when not the default

    @property
    def infotext_name(self) -> str:
        """The "Sampler" field A1111 writes: the name without its schedule type."""
        suffix = f" {self.schedule_type}"
        return self.name.removesuffix(suffix) if self.schedule_type else self.name


SAMPLERS = {
    sampler.name: sampler
    for sampler in (
        Sampler("Euler", "EulerDiscreteScheduler"),
        Sampler("Euler a", "EulerAncestralDiscreteScheduler"),
        Sampler("DPM++ 2M", "DPMSolverMultistepScheduler"),
        Sampler(
            "DPM++ 2M Karras",
            "DPMSolverMultistepScheduler",
            {"use_karras_sigmas": True},
            "Karras",
        ),
        Sampler(
            "DPM++ SDE Karras",
            "DPMSolverSinglestepScheduler",
            {"use_karras_sigmas": True},
            "Karras",
        ),
        Sampler("DDIM", "DDIMScheduler"),
        Sampler("UniPC", "UniPCMultistepScheduler"),
        Sampler("LCM", "LCMScheduler"),  # for LCM-distilled models and LoRAs
        Sampler("Heun", "HeunDiscreteScheduler"),
        Sampler("LMS", "LMSDiscreteScheduler"),
        # What SD 1.5 ships with; A1111's PLMS has no Runge-Kutta warm-up steps.
        Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    )
}


# A1111 1.9+'s "Automatic" schedule type is the sampler's own default (the "scheduler"
# option of modules/sd_samplers_kdiffusion.py); the samplers not listed take the model's
# discrete schedule, the uniform one our plain samplers run.
A1111_AUTOMATIC_SCHEDULES = {
    "DPM++ 2M": "Karras",
    "DPM++ SDE": "Karras",
    "DPM++ 2S a": "Karras",
    "DPM++ 2M SDE": "Exponential",
    "DPM++ 2M SDE Heun": "Exponential",
    "DPM++ 3M SDE": "Exponential",
}
UNIFORM_SCHEDULE = "Uniform"  # A1111's label for the model's discrete schedule


def infotext_schedule_type(sampler: str, schedule_type: str | None) -> str:
    """The "Schedule type" to write for an infotext "Sampler": always one, as A1111 1.9+
    does, and never "Automatic" where A1111's automatic schedule is not the one we ran."""
    if schedule_type:
        return schedule_type
    return UNIFORM_SCHEDULE if sampler in A1111_AUTOMATIC_SCHEDULES else "Automatic"


# FLUX.1's and SD 3.x's samplers (gpu_workers.flow), by the names Forge and ComfyUI give
# them: Euler is the models' own flow-matching scheduler; DPM++ 2M is diffusers' multistep
# solver on the same flow sigmas, as FluxPipeline and StableDiffusion3Pipeline accept it.
FLOW_EULER = Sampler("Euler", "FlowMatchEulerDiscreteScheduler")
FLOW_SAMPLERS = {
    sampler.name: sampler
    for sampler in (
        FLOW_EULER,
        Sampler(
            "DPM++ 2M",
            "DPMSolverMultistepScheduler",
            {
                "use_flow_sigmas": True,
                "prediction_type": "flow_prediction",
                "algorithm_type": "dpmsolver++",
                "solver_order": 2,
            },
        ),
    )
}


def sampler_for_class(scheduler_class: str) -> Sampler:
    """The plain (non-Karras) sampler of a model's own scheduler class; unknown classes keep
    their class name, as A1111 has no name for them."""
    if scheduler_class == FLOW_EULER.scheduler_class:
        return FLOW_EULER
    for sampler in SAMPLERS.values():
        if sampler.scheduler_class == scheduler_class and not sampler.schedule_type:
            return sampler
    return Sampler(scheduler_class, scheduler_class)


def fresh_scheduler(pipe, sampler_name: str | None):
    """A new scheduler for one run, built from the model's scheduler config.

    Schedulers keep per-run state (step index, multistep history), so runs never share one.
    `sampler_name` is a key of SAMPLERS; None keeps the model's own scheduler.
    """
    import diffusers

    if sampler_name is None:
        return type(pipe.scheduler).from_config(pipe.scheduler.config)
    sampler = SAMPLERS[sampler_name]
    scheduler_class = getattr(diffusers, sampler.scheduler_class)
    return scheduler_class.from_config(pipe.scheduler.config, **sampler.config)


def fresh_flow_scheduler(pipe, sampler_name: str | None, shift: float | None):
    """fresh_scheduler for a FLUX.1 or SD 3.x model: `sampler_name` a key of FLOW_SAMPLERS
    (None: the model's own scheduler) and `shift` the flow shift (ComfyUI's ModelSamplingSD3
    shift) in place of the model's own (SD 3.x's fixed one, FLUX.1's size-dependent one);
    None keeps the model's."""
    import diffusers

    config = pipe.scheduler.config
    if sampler_name is None:
        scheduler_class, overrides = type(pipe.scheduler), {}
    else:
        sampler = FLOW_SAMPLERS[sampler_name]
        scheduler_class = getattr(diffusers, sampler.scheduler_class)
        overrides = dict(sampler.config)
    # The flow-matching schedulers call it "shift", the multistep solvers "flow_shift".
    shift_name = "flow_shift" if overrides.get("use_flow_sigmas") else "shift"
    if shift is not None:
        overrides |= {shift_name: shift, "use_dynamic_shifting": False}
    elif shift_name == "flow_shift":
        overrides[shift_name] = config.get("shift", 1.0)
    return scheduler_class.from_config(config, **overrides)


def _is_flow_scheduler(scheduler) -> bool:
    return type(scheduler).__name__ == FLOW_EULER.scheduler_class or bool(
        scheduler.config.get("use_flow_sigmas", False)
    )


def sampler_of(scheduler, sampler_name: str | None) -> Sampler:
    if not sampler_name:
        return sampler_for_class(type(scheduler).__name__)
    return (FLOW_SAMPLERS if _is_flow_scheduler(scheduler) else SAMPLERS)[sampler_name]
