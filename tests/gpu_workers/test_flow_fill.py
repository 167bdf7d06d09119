"""FLUX.1 Fill through the engine (issue #17), on the tiny FLUX.1 Fill model (a
384-channel transformer), on the CPU in fp32:
- an inpaint request alone gives exactly FluxFillPipeline's pixels with the same settings
  (at strengths whose steps × strength is whole: the studio runs int(steps × strength)
  steps, as for every img2img, where the pipeline runs one more);
- a request in a batch (other seeds, prompts, masks, strengths) gives exactly its pixels
  alone;
- a Fill model refuses txt2img and img2img, and an IP-Adapter, naming what it does."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import FluxFillPipeline

from gpu_workers.requests import GenerationFailed, GenerationRequest, IPAdapterRef
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
def fill_request(tiny_flux_fill):
    return GenerationRequest(
        model_source=str(tiny_flux_fill),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=4,
        guidance_scale=30.0,
        width=64,
        height=48,
        seed=1234,
        init_image=source_image(),
        mask_image=mask_image(),
        strength=1.0,
    )


def plain_pixels(request):
    pipe = FluxFillPipeline.from_pretrained(request.model_source, dtype=torch.float32)
    return pipeline_pixels(
        pipe,
        request,
        image=request.init_image,
        mask_image=request.mask_image,
        strength=request.strength,
    )


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_inpaint_alone_is_the_fill_pipelines_image(make_engine, fill_request, strength):
    request = dataclasses.replace(fill_request, strength=strength)
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels(request))


def test_the_mask_steers_the_image(make_engine, fill_request):
    [first] = run_batch(make_engine(), [fill_request])
    [other] = run_batch(
        make_engine(), [dataclasses.replace(fill_request, mask_image=mask_image((0, 0, 32, 24)))]
    )

    assert not np.array_equal(pixels(first), pixels(other))


def test_a_row_in_a_batch_is_its_image_alone(make_engine, fill_request):
    requests = [
        fill_request,
        dataclasses.replace(fill_request, seed=7, prompt="a dog", strength=0.5),
        dataclasses.replace(fill_request, seed=8, mask_image=mask_image((0, 0, 32, 24))),
        dataclasses.replace(fill_request, seed=9, steps=3, guidance_scale=3.5),
    ]
    batched = run_batch(make_engine(max_batch=4), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 4  # they did share calls
    for n, (in_batch, by_itself) in enumerate(zip(batched, alone, strict=True)):
        assert np.array_equal(pixels(in_batch), pixels(by_itself)), n


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
def test_a_fill_model_only_inpaints(make_engine, fill_request, mode):
    request = dataclasses.replace(fill_request, mask_image=None, strength=0.5)
    if mode == "txt2img":
        request = dataclasses.replace(request, init_image=None, strength=1.0)

    with pytest.raises(GenerationFailed, match="FLUX.1 Fill models only inpaint and outpaint"):
        run_batch(make_engine(), [request])


def test_a_fill_model_refuses_an_ip_adapter(make_engine, fill_request, tmp_path):
    adapter = build_tiny_flux_ip_adapter(tmp_path / "ip-adapter")
    request = dataclasses.replace(
        fill_request,
        ip_adapter=IPAdapterRef(model_source=str(adapter), image=source_image(), scale=0.5),
    )

    with pytest.raises(GenerationFailed, match="FLUX.1 Fill models don't support IP-Adapter"):
        run_batch(make_engine(), [request])
