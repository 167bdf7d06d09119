"""A FLUX.1 Depth or Canny [dev] transformer as one `.safetensors` file
(flux1-canny-dev.safetensors, as users download it): recognised from its input projection's
width in the header (and a folder from its transformer's config), and loaded with the
configs of FLUX.1 [dev] (the base model users have), its 128 input channels its own; it
makes the control folder's image exactly, on the CPU in fp32 on the tiny models."""

import dataclasses

import numpy as np
import pytest
import torch

from gpu_workers import flow, pipelines
from gpu_workers.checkpoints import (
    FLUX_CONTROL_CHANNELS,
    flux_file_input_channels,
    folder_flux_input_channels,
)
from gpu_workers.requests import ControlRef, GenerationRequest
from tests.gpu_workers.engine_runs import (
    TRANSFORMER_FILE,
    pixels,
    run_batch,
    source_image,
    transformer_file,
    under_dev_configs,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def control_file(tiny_flux_control, tmp_path):
    return transformer_file(tiny_flux_control, tmp_path / "flux1-canny-dev.safetensors")


@pytest.fixture
def dev_configs(tiny_flux_control, tmp_path):
    return under_dev_configs(tiny_flux_control, tmp_path / "flux1-dev-configs")


def test_the_studio_reads_the_control_width_the_worker_runs():
    assert FLUX_CONTROL_CHANNELS == flow.FLUX_CONTROL_CHANNELS


def test_a_control_file_and_folder_are_told_from_flux_dev_and_fill(
    tiny_flux_control, tiny_flux, control_file
):
    assert flux_file_input_channels(control_file) == FLUX_CONTROL_CHANNELS
    assert folder_flux_input_channels(tiny_flux_control) == FLUX_CONTROL_CHANNELS
    assert flux_file_input_channels(tiny_flux / TRANSFORMER_FILE) == 64
    assert folder_flux_input_channels(tiny_flux) == 64


def test_a_control_folder_is_a_flux_model(tiny_flux_control):
    """Its model_index.json names FluxControlPipeline, as FLUX.1-Canny-dev's does."""
    assert pipelines.model_family(str(tiny_flux_control)) == pipelines.FLUX


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_single_control_file_loads_as_the_control_folder(
    tiny_flux, tiny_flux_control, control_file, cpu_config
):
    """With FLUX.1 [dev]'s configs (64 channels in and out) the file's 128 input channels
    are its own; diffusers refused it before (the x_embedder's shape did not match)."""
    pipe = pipelines.load_pipeline(str(control_file), cpu_config, model_config=str(tiny_flux))

    assert flow.is_flux_control(pipe)
    assert (pipe.transformer.config.in_channels, pipe.transformer.config.out_channels) == (
        128, 64
    )
    folder_pipe = pipelines.load_pipeline(str(tiny_flux_control), cpu_config)
    loaded, original = pipe.transformer.state_dict(), folder_pipe.transformer.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[key], original[key]) for key in original)


def test_the_single_file_makes_the_folders_image(
    make_engine, dev_configs, tiny_flux_control, control_file
):
    request = GenerationRequest(
        model_source=str(control_file), model_config=str(dev_configs), prompt="a cat on the mat",
        negative_prompt="", steps=4, guidance_scale=30.0, width=64, height=48, seed=1234,
        control=ControlRef(model_source="", image=source_image(), module="canny"),
    )
    folder_request = dataclasses.replace(
        request, model_source=str(tiny_flux_control), model_config=None
    )

    from_file, from_folder = run_batch(make_engine(), [request, folder_request])

    assert np.array_equal(pixels(from_file), pixels(from_folder))
