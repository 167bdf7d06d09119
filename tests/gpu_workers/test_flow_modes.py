"""img2img and inpaint for FLUX.1 and SD 3.x through the engine (issue #17), on the tiny
models, on the CPU in fp32:
- a request alone gives exactly the pixels of FluxImg2ImgPipeline / FluxInpaintPipeline /
  StableDiffusion3Img2ImgPipeline / StableDiffusion3InpaintPipeline with the same settings;
- a request in a batch (other seeds, prompts, strengths, step counts, guidance) gives
  exactly the pixels it gets alone."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import (
    FluxImg2ImgPipeline,
    FluxInpaintPipeline,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3InpaintPipeline,
)
from PIL import Image

from tests.gpu_workers.engine_runs import (
    mask_image,
    pipeline_pixels,
    pixels,
    run_batch,
    sd3_inpaint_pixels,
    source_image,
)

PIPELINES = {
    ("flux", "img2img"): FluxImg2ImgPipeline,
    ("flux", "inpaint"): FluxInpaintPipeline,
    ("sd3", "img2img"): StableDiffusion3Img2ImgPipeline,
    ("sd3", "inpaint"): StableDiffusion3InpaintPipeline,
}


@pytest.fixture
def img2img_request(flow_request):
    return dataclasses.replace(flow_request, init_image=source_image(), strength=0.75)


@pytest.fixture
def inpaint_request(img2img_request):
    return dataclasses.replace(img2img_request, mask_image=mask_image(), strength=0.5)


def plain_pixels(family, flow_model_dir, request):
    """What plain diffusers' img2img or inpaint pipeline makes for `request`."""
    pipe = PIPELINES[family, request.mode].from_pretrained(flow_model_dir, dtype=torch.float32)
    options = {"negative_prompt": request.negative_prompt} if family == "sd3" else {}
    options.update(image=request.init_image, strength=request.strength)
    if request.mode == "inpaint":
        options["mask_image"] = request.mask_image
    if (family, request.mode) == ("sd3", "inpaint"):
        return sd3_inpaint_pixels(pipe, request, **options)
    return pipeline_pixels(pipe, request, **options)


@pytest.mark.parametrize("strength", [0.75, 1.0])
def test_img2img_alone_is_the_pipelines_image(
    make_engine, family, flow_model_dir, img2img_request, strength
):
    request = dataclasses.replace(img2img_request, strength=strength)
    steps = []
    [result] = run_batch(make_engine(), [request], on_step=lambda step, total: steps.append(step))

    assert np.array_equal(pixels(result), plain_pixels(family, flow_model_dir, request))
    assert steps == list(range(1, request.denoising_steps() + 1))
    # It starts from the source: not txt2img's image of the same seed.
    txt2img = dataclasses.replace(request, init_image=None)
    [from_noise] = run_batch(make_engine(), [txt2img])
    assert not np.array_equal(pixels(result), pixels(from_noise))


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_inpaint_alone_is_the_pipelines_image(
    make_engine, family, flow_model_dir, inpaint_request, strength
):
    request = dataclasses.replace(inpaint_request, strength=strength)
    [result] = run_batch(make_engine(), [request])

    made = pixels(result)
    assert np.array_equal(made, plain_pixels(family, flow_model_dir, request))
    # Outside the mask the source stays (up to the VAE's round trip); inside it changes.
    [img2img] = run_batch(make_engine(), [dataclasses.replace(request, mask_image=None)])
    assert not np.array_equal(made, pixels(img2img))


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_a_row_in_a_batch_is_its_image_alone(make_engine, inpaint_request, mode):
    first = inpaint_request
    if mode == "img2img":
        first = dataclasses.replace(first, mask_image=None)
    other_source = source_image().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    requests = [
        first,
        dataclasses.replace(first, prompt="the mat", seed=7, steps=6, strength=0.5),
        dataclasses.replace(first, init_image=other_source, guidance_scale=1.0, seed=8),
        dataclasses.replace(first, negative_prompt="", seed=9, strength=1.0, steps=3),
    ]
    batched = run_batch(make_engine(max_batch=4), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 4  # they did share calls
    for n, (in_batch, by_itself) in enumerate(zip(batched, alone, strict=True)):
        assert np.array_equal(pixels(in_batch), pixels(by_itself)), n


def test_img2img_runs_the_studios_count_of_steps(make_engine, img2img_request):
    """4 steps at strength 0.6 run int(4 × 0.6) = 2 steps, as for SD (A1111's count); the
    flow pipelines themselves would run 3."""
    request = dataclasses.replace(img2img_request, strength=0.6)
    steps = []
    run_batch(make_engine(), [request], on_step=lambda step, total: steps.append((step, total)))

    assert steps == [(1, 2), (2, 2)]
