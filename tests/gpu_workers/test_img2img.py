"""img2img through the engine: the pipeline's image for a request alone, batches that
don't mix their rows, and steps counted as A1111 counts them (strength x steps)."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image

from gpu_workers.runner import generate, generate_all


@pytest.fixture
def source_image():
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    return Image.fromarray(gradient, "RGB")


@pytest.fixture
def img2img_request(tiny_request, source_image):
    return dataclasses.replace(tiny_request, init_image=source_image, strength=0.5, steps=8)


def test_alone_it_is_the_img2img_pipelines_image(img2img_request, cpu_config, plain_pipeline):
    pipe = StableDiffusionImg2ImgPipeline.from_pipe(plain_pipeline)
    steps = []

    result = generate(img2img_request, config=cpu_config, on_step=lambda *s: steps.append(s))

    expected = pipe(
        prompt=img2img_request.prompt,
        negative_prompt=img2img_request.negative_prompt,
        image=img2img_request.init_image,
        strength=img2img_request.strength,
        num_inference_steps=img2img_request.steps,
        guidance_scale=img2img_request.guidance_scale,
        generator=torch.Generator("cpu").manual_seed(img2img_request.seed),
    ).images[0]
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))
    assert steps == [(step, 4) for step in range(1, 5)]  # 8 steps at strength 0.5


def test_in_a_batch_each_row_keeps_its_own_source_and_seed(
    img2img_request, cpu_config, source_image
):
    flipped = source_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    requests = [img2img_request, dataclasses.replace(img2img_request, init_image=flipped, seed=9)]

    batched = generate_all(requests, config=cpu_config)
    alone = [generate(request, config=cpu_config) for request in requests]

    for together, by_itself in zip(batched, alone, strict=True):
        assert np.array_equal(np.asarray(together.images[0]), np.asarray(by_itself.images[0]))
    assert batched[0].batch_size == 2


def test_rows_with_their_own_strengths_and_steps_share_a_batch_as_alone(
    img2img_request, cpu_config, source_image
):
    """Different strengths start rows at different timesteps of their own schedules."""
    flipped = source_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    requests = [
        dataclasses.replace(img2img_request, strength=0.3, steps=10),
        dataclasses.replace(img2img_request, init_image=flipped, strength=0.75, seed=9),
        dataclasses.replace(img2img_request, strength=1.0, steps=5, sampler="DPM++ 2M", seed=4),
    ]

    batched = generate_all(requests, config=cpu_config)
    alone = [generate(request, config=cpu_config) for request in requests]

    assert all(result.batch_size > 1 for result in batched)
    for together, by_itself in zip(batched, alone, strict=True):
        assert np.array_equal(np.asarray(together.images[0]), np.asarray(by_itself.images[0]))


def test_strength_changes_how_far_the_image_moves(img2img_request, cpu_config, source_image):
    def distance(strength):
        request = dataclasses.replace(img2img_request, strength=strength)
        image = np.asarray(generate(request, config=cpu_config).images[0]).astype(int)
        return np.abs(image - np.asarray(source_image).astype(int)).mean()

    assert distance(0.25) < distance(1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strength": 0}, "strength must be above 0 and at most 1, not 0"),
        ({"strength": 1.5}, "not 1.5"),
        ({"strength": 0.1, "steps": 5}, "strength 0.1 of 5 steps runs no step at all"),
        ({"width": 128}, "init_image must be a 128x64 image, not (64, 64)"),
    ],
)
def test_bad_img2img_requests_are_refused(img2img_request, cpu_config, change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate(dataclasses.replace(img2img_request, **change), config=cpu_config)
