"""Samplers and the shift for FLUX.1 and SD 3.x through the engine (issue #17), on the tiny
models, on the CPU in fp32: "DPM++ 2M" is diffusers' multistep solver on flow sigmas, a
request's shift replaces the model's, each exactly as FluxPipeline / StableDiffusion3Pipeline
make it with that scheduler; rows with different samplers and shifts share a batch, each its
image alone; the result names the sampler."""

import dataclasses

import numpy as np
import pytest
from diffusers import (
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from gpu_workers.samplers import FLOW_SAMPLERS, SAMPLERS
from tests.gpu_workers.engine_runs import flow_txt2img_pixels, pixels, run_batch


@pytest.fixture
def flow_request(flow_request):
    return dataclasses.replace(flow_request, steps=5)


def dpm_flow(config, **overrides):
    """DPM++ 2M on flow sigmas, as diffusers' docs set it up for these pipelines; the flow
    shift is the model's (SD 3.x: its config's shift; FLUX.1: set from the image size)."""
    options = {
        "use_flow_sigmas": True,
        "prediction_type": "flow_prediction",
        "flow_shift": config.get("shift", 1.0),
        **overrides,
    }
    return DPMSolverMultistepScheduler.from_config(config, **options)


def test_the_flow_sampler_names_are_a1111_names():
    assert list(FLOW_SAMPLERS) == ["Euler", "DPM++ 2M"]
    assert set(FLOW_SAMPLERS) <= set(SAMPLERS)  # the engine's submit check knows them


def test_dpm_2m_is_the_pipelines_image_with_diffusers_flow_dpm(
    make_engine, family, flow_model_dir, flow_request
):
    request = dataclasses.replace(flow_request, sampler="DPM++ 2M")
    [result] = run_batch(make_engine(), [request])

    plain = flow_txt2img_pixels(family, flow_model_dir, request, dpm_flow)
    assert np.array_equal(pixels(result), plain)
    assert (result.sampler, result.schedule_type) == ("DPM++ 2M", None)
    assert result.scheduler_class == "DPMSolverMultistepScheduler"
    assert result.scheduler_config["use_flow_sigmas"] is True
    [euler] = run_batch(make_engine(), [flow_request])
    assert not np.array_equal(pixels(result), pixels(euler))


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M"])
def test_a_shift_replaces_the_models(make_engine, family, flow_model_dir, flow_request, sampler):
    request = dataclasses.replace(flow_request, sampler=sampler, shift=6.0)

    def shifted(config):
        fixed = {"use_dynamic_shifting": False}
        if sampler == "Euler":
            return FlowMatchEulerDiscreteScheduler.from_config(config, shift=6.0, **fixed)
        return dpm_flow(config, flow_shift=6.0, **fixed)

    [result] = run_batch(make_engine(), [request])

    # FluxPipeline always passes DPM++ 2M a size-dependent shift, so it has no image to
    # compare with for a fixed one.
    if (family, sampler) != ("flux", "DPM++ 2M"):
        plain = flow_txt2img_pixels(family, flow_model_dir, request, shifted)
        assert np.array_equal(pixels(result), plain)
    key = "shift" if sampler == "Euler" else "flow_shift"
    assert result.scheduler_config[key] == 6.0
    [unshifted] = run_batch(make_engine(), [dataclasses.replace(request, shift=None)])
    assert not np.array_equal(pixels(result), pixels(unshifted))


def test_rows_with_other_samplers_and_shifts_are_their_images_alone(make_engine, flow_request):
    requests = [
        flow_request,
        dataclasses.replace(flow_request, sampler="DPM++ 2M", seed=7),
        dataclasses.replace(flow_request, sampler="Euler", shift=2.0, seed=8, steps=3),
        dataclasses.replace(flow_request, sampler="DPM++ 2M", shift=4.5, seed=9, steps=7),
    ]
    batched = run_batch(make_engine(max_batch=4), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 4
    for n, (in_batch, by_itself) in enumerate(zip(batched, alone, strict=True)):
        assert np.array_equal(pixels(in_batch), pixels(by_itself)), n
