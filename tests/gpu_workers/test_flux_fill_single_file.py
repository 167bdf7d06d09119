"""A FLUX.1 Fill transformer as one `.safetensors` file (flux1-fill-dev.safetensors, as
users download it): recognised from its input projection's width in the header, and
loaded with the configs of FLUX.1 [dev] (the base model users have) or of a Fill folder,
its 384 input channels its own; it inpaints exactly as the Fill folder does, on the CPU in
fp32 on the tiny models."""

import dataclasses

import numpy as np
import pytest
import torch

from gpu_workers import flow, pipelines
from gpu_workers.checkpoints import (
    FLUX_FILL_CHANNELS,
    flux_file_input_channels,
    folder_flux_input_channels,
)
from gpu_workers.requests import GenerationFailed, GenerationRequest
from tests.gpu_workers.engine_runs import (
    TRANSFORMER_FILE,
    mask_image,
    pixels,
    run_batch,
    source_image,
    transformer_file,
    under_dev_configs,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def fill_file(tiny_flux_fill, tmp_path):
    return transformer_file(tiny_flux_fill, tmp_path / "flux1-fill-dev.safetensors")


@pytest.fixture
def dev_configs(tiny_flux_fill, tmp_path):
    return under_dev_configs(tiny_flux_fill, tmp_path / "flux1-dev-configs")


def test_the_studio_reads_the_fill_width_the_worker_runs():
    assert FLUX_FILL_CHANNELS == flow.FLUX_FILL_CHANNELS


def test_a_fill_file_and_folder_are_told_from_flux_dev(tiny_flux_fill, tiny_flux, fill_file):
    assert flux_file_input_channels(fill_file) == FLUX_FILL_CHANNELS
    assert folder_flux_input_channels(tiny_flux_fill) == FLUX_FILL_CHANNELS
    assert flux_file_input_channels(tiny_flux / TRANSFORMER_FILE) == 64
    assert folder_flux_input_channels(tiny_flux) == 64


@pytest.mark.usefixtures("empty_pipeline_cache")
@pytest.mark.parametrize("config", ["flux_dev", "fill_folder"])
def test_a_single_fill_file_loads_as_the_fill_folder(
    config, tiny_flux, tiny_flux_fill, fill_file, cpu_config
):
    """With FLUX.1 [dev]'s configs (64 channels in and out) the file's 384 input channels
    are its own, as FLUX.1-Fill-dev's config says; diffusers refused it before (the
    x_embedder's shape did not match)."""
    model_config = str(tiny_flux if config == "flux_dev" else tiny_flux_fill)

    pipe = pipelines.load_pipeline(str(fill_file), cpu_config, model_config=model_config)

    assert flow.is_flux_fill(pipe)
    assert (pipe.transformer.config.in_channels, pipe.transformer.config.out_channels) == (
        384, 64
    )
    folder_pipe = pipelines.load_pipeline(str(tiny_flux_fill), cpu_config)
    loaded, original = pipe.transformer.state_dict(), folder_pipe.transformer.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[key], original[key]) for key in original)


def test_the_single_file_inpaints_the_folders_image(
    make_engine, dev_configs, tiny_flux_fill, fill_file
):
    request = GenerationRequest(
        model_source=str(fill_file), model_config=str(dev_configs), prompt="a cat on the mat",
        negative_prompt="", steps=4, guidance_scale=30.0, width=64, height=48, seed=1234,
        init_image=source_image(), mask_image=mask_image(), strength=1.0,
    )
    folder_request = dataclasses.replace(
        request, model_source=str(tiny_flux_fill), model_config=None
    )

    from_file, from_folder = run_batch(make_engine(), [request, folder_request])

    assert np.array_equal(pixels(from_file), pixels(from_folder))


def test_the_single_file_refuses_txt2img_naming_the_family(make_engine, tiny_flux, fill_file):
    request = GenerationRequest(
        model_source=str(fill_file), model_config=str(tiny_flux), prompt="a cat",
        negative_prompt="", steps=2, guidance_scale=30.0, width=64, height=48, seed=1,
    )

    with pytest.raises(GenerationFailed, match="FLUX.1 Fill models only inpaint and outpaint"):
        run_batch(make_engine(), [request])
