"""ControlNet on SDXL (StableDiffusionXLControlNetPipeline: the pooled prompt and sizes go
to the ControlNet too) and with inpainting (StableDiffusionControlNetInpaintPipeline: the
ControlNet sees the latents without the mask), each alone equal to its pipeline."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image

from gpu_workers.control import canny_edges
from gpu_workers.requests import ControlRef, GenerationFailed
from gpu_workers.runner import generate, generate_all
from gpu_workers.tiny_models import build_tiny_controlnet, build_tiny_sd15


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory):
    return build_tiny_controlnet(tmp_path_factory.mktemp("models") / "tiny-controlnet")


@pytest.fixture(scope="session")
def tiny_sdxl_controlnet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-controlnet-sdxl"
    return build_tiny_controlnet(folder, sdxl=True)


def square(box=(16, 16, 48, 48)):
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    left, top, right, bottom = box
    image[top:bottom, left:right] = 255
    return Image.fromarray(image, "RGB")


def controlled(request, controlnet_dir, **control):
    ref = ControlRef(model_source=str(controlnet_dir), image=square(), **control)
    return dataclasses.replace(request, control=ref)


def same(result, expected):
    difference = np.abs(np.asarray(result.images[0], dtype=int) - np.asarray(expected, dtype=int))
    return difference.max() == 0


def loaded_controlnet(folder):
    return ControlNetModel.from_pretrained(folder, dtype=torch.float32)


@pytest.fixture
def sdxl_request(tiny_request, tiny_sdxl_model_dir, tiny_sdxl_controlnet):
    request = dataclasses.replace(
        tiny_request, model_source=str(tiny_sdxl_model_dir), negative_prompt=""
    )
    return controlled(request, tiny_sdxl_controlnet, conditioning_scale=0.8)


@pytest.mark.parametrize(("guidance", "start", "end"), [(7.0, 0.0, 1.0), (1.0, 0.25, 0.75)])
def test_sdxl_alone_gives_the_sdxl_controlnet_pipelines_image(
    sdxl_request, cpu_config, tiny_sdxl_model_dir, tiny_sdxl_controlnet, guidance, start, end
):
    control = dataclasses.replace(sdxl_request.control, guidance_start=start, guidance_end=end)
    request = dataclasses.replace(sdxl_request, guidance_scale=guidance, control=control)
    result = generate(request, config=cpu_config)

    base = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model_dir, dtype=torch.float32)
    pipe = StableDiffusionXLControlNetPipeline.from_pipe(
        base, controlnet=loaded_controlnet(tiny_sdxl_controlnet)
    )
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt=request.prompt,
        image=canny_edges(control.image, control.low_threshold, control.high_threshold),
        num_inference_steps=request.steps,
        guidance_scale=guidance,
        width=request.width,
        height=request.height,
        controlnet_conditioning_scale=control.conditioning_scale,
        control_guidance_start=start,
        control_guidance_end=end,
        generator=torch.Generator("cpu").manual_seed(request.seed),
    ).images[0]
    assert same(result, expected)


def test_sdxl_controlnet_steers_and_batches(sdxl_request, cpu_config):
    plain = generate(dataclasses.replace(sdxl_request, control=None), config=cpu_config)
    assert not same(generate(sdxl_request, config=cpu_config), plain.images[0])

    requests = [
        dataclasses.replace(
            sdxl_request,
            seed=seed,
            control=dataclasses.replace(sdxl_request.control, image=square(box)),
        )
        for seed, box in [(1, (16, 16, 48, 48)), (2, (0, 8, 32, 56))]
    ]
    batched = generate_all(requests, config=cpu_config)
    assert {result.batch_size for result in batched} == {2}
    for together, request in zip(batched, requests, strict=True):
        alone = generate(request, config=cpu_config)
        assert np.array_equal(np.asarray(together.images[0]), np.asarray(alone.images[0]))


def test_an_sd_controlnet_on_sdxl_fails_with_a_reason(sdxl_request, tiny_controlnet, cpu_config):
    request = controlled(sdxl_request, tiny_controlnet)
    with pytest.raises(GenerationFailed, match="made for another base model family"):
        generate(request, config=cpu_config)


@pytest.fixture(scope="session")
def tiny_inpaint_model(tmp_path_factory):
    return build_tiny_sd15(tmp_path_factory.mktemp("models") / "tiny-inpaint", inpaint=True)


@pytest.fixture
def inpaint_request(tiny_request, tiny_controlnet):
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 8:40] = 255
    request = dataclasses.replace(
        tiny_request,
        init_image=Image.fromarray(gradient, "RGB"),
        mask_image=Image.fromarray(mask, "L"),
        strength=1.0,
        steps=6,
    )
    return controlled(request, tiny_controlnet, conditioning_scale=0.9)


@pytest.mark.parametrize("inpainting_model", [False, True], ids=["plain", "inpainting"])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_inpaint_alone_gives_the_controlnet_inpaint_pipelines_image(
    inpaint_request, cpu_config, tiny_sd15, tiny_inpaint_model, tiny_controlnet,
    inpainting_model, strength,
):
    model = tiny_inpaint_model if inpainting_model else tiny_sd15
    request = dataclasses.replace(inpaint_request, model_source=str(model), strength=strength)
    result = generate(request, config=cpu_config)

    base = StableDiffusionPipeline.from_pretrained(
        model, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe = StableDiffusionControlNetInpaintPipeline.from_pipe(
        base, controlnet=loaded_controlnet(tiny_controlnet)
    )
    pipe.set_progress_bar_config(disable=True)
    control = request.control
    expected = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        image=request.init_image,
        mask_image=request.mask_image,
        control_image=canny_edges(control.image, control.low_threshold, control.high_threshold),
        strength=strength,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        controlnet_conditioning_scale=control.conditioning_scale,
        generator=torch.Generator("cpu").manual_seed(request.seed),
    ).images[0]
    assert same(result, expected)
    plain = generate(dataclasses.replace(request, control=None), config=cpu_config)
    assert not same(result, plain.images[0])
