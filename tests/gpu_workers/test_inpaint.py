"""Inpainting through the engine, with a plain model (the source is blended back outside
the mask after every step) and an inpainting model (9-channel UNet): a request alone gets
StableDiffusionInpaintPipeline's image."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
from PIL import Image

from gpu_workers.requests import GenerationFailed
from gpu_workers.runner import generate, generate_all
from gpu_workers.tiny_models import build_tiny_sd15


@pytest.fixture(scope="session")
def tiny_inpaint_model(tmp_path_factory):
    return build_tiny_sd15(tmp_path_factory.mktemp("models") / "tiny-inpaint", inpaint=True)


@pytest.fixture
def source_image():
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    return Image.fromarray(gradient, "RGB")


@pytest.fixture
def mask_image():
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 8:40] = 255  # redraw a box; keep the rest
    return Image.fromarray(mask, "L")


@pytest.fixture
def inpaint_request(tiny_request, source_image, mask_image):
    return dataclasses.replace(
        tiny_request, init_image=source_image, mask_image=mask_image, strength=1.0, steps=6
    )


def pipeline_image(pipe, request):
    inpaint = StableDiffusionInpaintPipeline.from_pipe(pipe)
    return inpaint(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        image=request.init_image,
        mask_image=request.mask_image,
        strength=request.strength,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(request.seed),
    ).images[0]


@pytest.mark.parametrize(
    ("strength", "height"), [(1.0, 64), (0.75, 64), (0.5, 64), (1.0, 48), (0.5, 48)]
)
def test_a_plain_model_alone_gives_the_inpaint_pipelines_image(
    inpaint_request, cpu_config, plain_pipeline, strength, height
):
    request = dataclasses.replace(
        inpaint_request,
        strength=strength,
        height=height,
        init_image=inpaint_request.init_image.crop((0, 0, 64, height)),
        mask_image=inpaint_request.mask_image.crop((0, 0, 64, height)),
    )
    steps = []

    result = generate(request, config=cpu_config, on_step=lambda *step: steps.append(step))

    expected = pipeline_image(plain_pipeline, request)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))
    assert len(steps) == int(6 * strength)


def test_an_inpainting_model_alone_gives_the_inpaint_pipelines_image(
    inpaint_request, cpu_config, tiny_inpaint_model
):
    request = dataclasses.replace(inpaint_request, model_source=str(tiny_inpaint_model))
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_inpaint_model, dtype=torch.float32, safety_checker=None,
        requires_safety_checker=False,
    )

    result = generate(request, config=cpu_config)

    assert np.array_equal(np.asarray(result.images[0]), np.asarray(pipeline_image(pipe, request)))


def test_in_a_batch_each_row_keeps_its_own_mask(inpaint_request, cpu_config, mask_image):
    inverted = Image.eval(mask_image, lambda value: 255 - value)
    requests = [inpaint_request, dataclasses.replace(inpaint_request, mask_image=inverted)]

    batched = generate_all(requests, config=cpu_config)
    alone = [generate(request, config=cpu_config) for request in requests]

    for together, by_itself in zip(batched, alone, strict=True):
        assert np.array_equal(np.asarray(together.images[0]), np.asarray(by_itself.images[0]))
    assert not np.array_equal(np.asarray(batched[0].images[0]), np.asarray(batched[1].images[0]))


def test_an_inpainting_model_refuses_txt2img_with_a_reason(tiny_request, cpu_config,
                                                          tiny_inpaint_model):
    request = dataclasses.replace(tiny_request, model_source=str(tiny_inpaint_model))
    with pytest.raises(GenerationFailed, match="inpainting model: use it to inpaint"):
        generate(request, config=cpu_config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"init_image": None}, "mask_image needs an init_image"),
        ({"mask_image": Image.new("L", (32, 32))}, r"mask_image must be the init_image's size"),
    ],
)
def test_bad_inpaint_requests_are_refused(inpaint_request, cpu_config, change, message):
    with pytest.raises(ValueError, match=message):
        generate(dataclasses.replace(inpaint_request, **change), config=cpu_config)
