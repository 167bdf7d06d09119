"""Every sampler a user can pick runs on the tiny model and is reported as A1111 writes it."""

import dataclasses

import numpy as np
import pytest

from gpu_workers.runner import generate
from gpu_workers.samplers import SAMPLERS

A1111_FIELDS = {
    "DPM++ 2M Karras": ("DPM++ 2M", "Karras"),
    "DPM++ SDE Karras": ("DPM++ SDE", "Karras"),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_runs_its_steps(tiny_request, cpu_config, name):
    request = dataclasses.replace(tiny_request, sampler=name, steps=3)
    steps = []

    result = generate(request, config=cpu_config, on_step=lambda *step: steps.append(step))

    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert result.images[0].mode == "RGB"
    assert (result.sampler, result.schedule_type) == A1111_FIELDS.get(name, (name, None))
    assert result.scheduler_class == SAMPLERS[name].scheduler_class


def test_karras_sigmas_are_really_used(tiny_request, cpu_config):
    plain = generate(dataclasses.replace(tiny_request, sampler="DPM++ 2M"), config=cpu_config)
    karras = generate(
        dataclasses.replace(tiny_request, sampler="DPM++ 2M Karras"), config=cpu_config
    )

    assert karras.scheduler_config["use_karras_sigmas"] is True
    assert plain.scheduler_config["use_karras_sigmas"] is False
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(karras.images[0]))


def test_the_models_own_scheduler_is_named_by_its_sampler(tiny_request, cpu_config):
    result = generate(tiny_request, config=cpu_config)  # the tiny model ships with Euler

    assert (result.sampler, result.schedule_type) == ("Euler", None)
    assert result.scheduler_config["_class_name"] == "EulerDiscreteScheduler"
