"""FLUX.1 Depth and Canny [dev] through the engine, on the tiny FLUX.1 control model (a
128-channel transformer reading the control image's packed latents), on the CPU in fp32:
- a txt2img request with a control image alone gives exactly FluxControlPipeline's pixels
  with the same settings (the image as it is, or its canny edges);
- a request in a batch (other seeds, prompts, control images, steps) gives exactly its
  pixels alone;
- the model refuses a source image, a request without a control image, a ControlNet model
  and an IP-Adapter, naming what it does."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import FluxControlPipeline, FluxPipeline
from PIL import Image

from gpu_workers.control import control_image_from
from gpu_workers.flow import FlowBatch
from gpu_workers.requests import ControlRef, GenerationFailed, GenerationRequest, IPAdapterRef
from gpu_workers.tiny_models import build_tiny_flux_ip_adapter
from tests.gpu_workers.engine_runs import (
    mask_image,
    pipeline_pixels,
    pixels,
    run_batch,
    source_image,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def control_request(tiny_flux_control):
    return GenerationRequest(
        model_source=str(tiny_flux_control),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=4,
        guidance_scale=10.0,
        width=64,
        height=48,
        seed=1234,
        control=ControlRef(model_source="", image=source_image(), module="none"),
    )


def plain_pixels(request):
    pipe = FluxControlPipeline.from_pretrained(request.model_source, dtype=torch.float32)
    control = request.control
    image = control_image_from(
        control.image,
        request.width,
        request.height,
        module=control.module,
        low_threshold=control.low_threshold,
        high_threshold=control.high_threshold,
    )
    return pipeline_pixels(pipe, request, control_image=image)


@pytest.mark.parametrize("module", ["none", "canny"])
def test_alone_is_the_control_pipelines_image(make_engine, control_request, module):
    control = dataclasses.replace(control_request.control, module=module)
    request = dataclasses.replace(control_request, control=control)
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels(request))


def test_the_control_image_steers_the_image(make_engine, control_request):
    [first] = run_batch(make_engine(), [control_request])
    other_control = dataclasses.replace(
        control_request.control, image=Image.new("RGB", (64, 48), (200, 30, 90))
    )
    [other] = run_batch(
        make_engine(), [dataclasses.replace(control_request, control=other_control)]
    )

    assert not np.array_equal(pixels(first), pixels(other))


def test_a_row_in_a_batch_is_its_image_alone(make_engine, control_request):
    canny = dataclasses.replace(control_request.control, module="canny")
    requests = [
        control_request,
        dataclasses.replace(control_request, seed=7, prompt="a dog", control=canny),
        dataclasses.replace(control_request, seed=8, guidance_scale=30.0),
        dataclasses.replace(control_request, seed=9, steps=3),
    ]
    batched = run_batch(make_engine(max_batch=4), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 4  # they did share calls
    for n, (in_batch, by_itself) in enumerate(zip(batched, alone, strict=True)):
        assert np.array_equal(pixels(in_batch), pixels(by_itself)), n


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_a_control_model_makes_images_from_text_only(make_engine, control_request, mode):
    request = dataclasses.replace(control_request, init_image=source_image(), strength=0.5)
    if mode == "inpaint":
        request = dataclasses.replace(request, mask_image=mask_image())

    with pytest.raises(
        GenerationFailed, match=f"FLUX.1 Depth and Canny models only .* not {mode}"
    ):
        run_batch(make_engine(), [request])


def test_a_control_model_needs_a_control_image(make_engine, control_request):
    request = dataclasses.replace(control_request, control=None)

    with pytest.raises(GenerationFailed, match="need a control image"):
        run_batch(make_engine(), [request])


def test_a_control_model_takes_no_controlnet(control_request, tmp_path):
    # The worker loads a FLUX.1 folder as FluxPipeline, whichever pipeline it was saved for.
    pipe = FluxPipeline.from_pretrained(control_request.model_source)
    control = dataclasses.replace(
        control_request.control, model_source=str(tmp_path / "controlnet"), name="Canny CN"
    )
    with (
        FlowBatch(pipe, torch.device("cpu")) as batch,
        pytest.raises(GenerationFailed, match=r"without a ControlNet model \(not Canny CN\)"),
    ):
        batch.add(dataclasses.replace(control_request, control=control))


def test_a_control_model_refuses_an_ip_adapter(make_engine, control_request, tmp_path):
    adapter = build_tiny_flux_ip_adapter(tmp_path / "ip-adapter")
    request = dataclasses.replace(
        control_request,
        ip_adapter=IPAdapterRef(model_source=str(adapter), image=source_image(), scale=0.5),
    )

    with pytest.raises(GenerationFailed, match="FLUX.1 Depth and Canny models don't support"):
        run_batch(make_engine(), [request])
