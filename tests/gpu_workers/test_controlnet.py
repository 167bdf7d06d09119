"""ControlNet (canny) through the engine: a request alone gets
StableDiffusionControlNetPipeline's image, batched requests stay their own, the edge map
is sensible, and bad input is refused at submit. SDXL and inpaint: test_controlnet_modes."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetPipeline,
)
from PIL import Image

from gpu_workers.control import canny_edges
from gpu_workers.engine import BatchKey
from gpu_workers.requests import ControlRef
from gpu_workers.runner import generate, generate_all
from gpu_workers.tiny_models import build_tiny_controlnet


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory):
    return build_tiny_controlnet(tmp_path_factory.mktemp("models") / "tiny-controlnet")


def square(size=64, box=(16, 16, 48, 48), fill=255):
    image = np.zeros((size, size, 3), dtype=np.uint8)
    left, top, right, bottom = box
    image[top:bottom, left:right] = fill
    return Image.fromarray(image, "RGB")


@pytest.fixture
def control_request(tiny_request, tiny_controlnet):
    control = ControlRef(model_source=str(tiny_controlnet), image=square(), conditioning_scale=1.0)
    return dataclasses.replace(tiny_request, control=control)


def pipeline_image(plain_pipeline, tiny_controlnet, request):
    controlnet = ControlNetModel.from_pretrained(tiny_controlnet, dtype=torch.float32)
    pipe = StableDiffusionControlNetPipeline.from_pipe(plain_pipeline, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    control = request.control
    return pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        image=canny_edges(control.image, control.low_threshold, control.high_threshold),
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        controlnet_conditioning_scale=control.conditioning_scale,
        control_guidance_start=control.guidance_start,
        control_guidance_end=control.guidance_end,
        generator=torch.Generator("cpu").manual_seed(request.seed),
    ).images[0]


@pytest.mark.parametrize(
    ("scale", "start", "end", "guidance"),
    [(1.0, 0.0, 1.0, 7.0), (0.5, 0.25, 0.75, 7.0), (1.5, 0.0, 1.0, 1.0)],
)
def test_a_request_alone_gives_the_controlnet_pipelines_image(
    control_request, cpu_config, plain_pipeline, tiny_controlnet, scale, start, end, guidance
):
    control = dataclasses.replace(
        control_request.control, conditioning_scale=scale, guidance_start=start, guidance_end=end
    )
    request = dataclasses.replace(control_request, control=control, guidance_scale=guidance)

    result = generate(request, config=cpu_config)

    expected = pipeline_image(plain_pipeline, tiny_controlnet, request)
    diff = np.abs(np.asarray(result.images[0], dtype=int) - np.asarray(expected, dtype=int))
    assert diff.max() == 0, (diff.max(), (diff > 0).mean())


def test_the_controlnet_changes_the_image(control_request, cpu_config):
    plain = generate(dataclasses.replace(control_request, control=None), config=cpu_config)
    controlled = generate(control_request, config=cpu_config)
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(controlled.images[0]))


def test_batched_requests_equal_their_images_alone(control_request, cpu_config):
    shapes = [square(), square(box=(8, 24, 56, 40)), square(box=(0, 0, 32, 64))]
    requests = [
        dataclasses.replace(
            control_request,
            seed=seed,
            guidance_scale=guidance,
            prompt=prompt,
            control=dataclasses.replace(control_request.control, image=shape),
        )
        for seed, guidance, prompt, shape in zip(
            [1, 2, 3], [7.0, 1.0, 4.0], ["a cat", "the mat", "a hat"], shapes, strict=True
        )
    ]
    assert len({BatchKey.for_request(request) for request in requests}) == 1

    batched = generate_all(requests, config=cpu_config)
    alone = [generate(request, config=cpu_config) for request in requests]

    assert {result.batch_size for result in batched} == {3}
    for together, single in zip(batched, alone, strict=True):
        assert np.array_equal(np.asarray(together.images[0]), np.asarray(single.images[0]))


def test_the_model_splits_batches_but_scales_and_spans_do_not(control_request):
    other_scale = dataclasses.replace(
        control_request,
        control=dataclasses.replace(
            control_request.control, conditioning_scale=0.5, guidance_start=0.5
        ),
    )
    no_control = dataclasses.replace(control_request, control=None)
    other_model = dataclasses.replace(
        control_request,
        control=dataclasses.replace(control_request.control, model_source="other/controlnet"),
    )
    keys = [BatchKey.for_request(r) for r in (control_request, no_control, other_model)]
    assert len(set(keys)) == 3
    other_image = dataclasses.replace(
        control_request, control=dataclasses.replace(control_request.control, image=square(fill=9))
    )
    assert BatchKey.for_request(other_image) == BatchKey.for_request(control_request)
    assert BatchKey.for_request(other_scale) == BatchKey.for_request(control_request)


def test_rows_with_their_own_scales_spans_and_steps_equal_alone(
    control_request, cpu_config, make_engine
):
    """Rows at different steps of different ControlNet spans get a scale per UNet row; one
    joins the batch while it runs."""
    spans = [(1.0, 0.0, 1.0, 4), (0.5, 0.25, 0.75, 6), (1.5, 0.0, 0.5, 3)]
    requests = [
        dataclasses.replace(
            control_request,
            seed=n,
            steps=steps,
            control=dataclasses.replace(
                control_request.control, conditioning_scale=scale, guidance_start=start,
                guidance_end=end,
            ),
        )
        for n, (scale, start, end, steps) in enumerate(spans)
    ]
    alone = [generate(request, config=cpu_config) for request in requests]
    engine = make_engine()
    joined = []

    def on_step(step, total):
        if step == 2:
            joined.append(engine.submit(requests[2]))

    futures = [engine.submit(requests[0], on_step=on_step), engine.submit(requests[1])]
    engine.start()
    batched = [future.result() for future in futures]
    batched += [future.result() for future in joined]

    assert all(result.batch_size > 1 for result in batched)
    for together, single in zip(batched, alone, strict=True):
        assert np.array_equal(np.asarray(together.images[0]), np.asarray(single.images[0]))


def test_canny_edges_follow_the_squares_border():
    edges = np.asarray(canny_edges(square(), 100, 200).convert("L")) > 0

    assert edges.any()
    rows, columns = np.nonzero(edges)
    # Every edge pixel lies on the border (one pixel either side of it), none inside or out.
    on_border = (
        (np.abs(rows - 16) <= 1) | (np.abs(rows - 47) <= 1) | (np.abs(columns - 16) <= 1)
    ) | (np.abs(columns - 47) <= 1)
    assert on_border.all()
    assert not edges[24:40, 24:40].any() and not edges[:8].any()
    # Each side is traced along its length, and thin (non-maximum suppression).
    assert edges[20:44, 14:19].any(axis=1).all()
    assert edges[20:44, 14:19].sum(axis=1).max() <= 2


def test_thresholds_change_the_edges():
    # A soft square: a gradient ramp from dark to light in both directions.
    ramp = np.tile(np.linspace(0, 255, 64), (64, 1))
    image = Image.fromarray(((ramp + ramp.T) / 2).astype(np.uint8)).convert("RGB")
    image.paste(square(box=(16, 16, 48, 48), fill=120).crop((16, 16, 48, 48)), (16, 16))

    def count(low, high):
        return int((np.asarray(canny_edges(image, low, high).convert("L")) > 0).sum())

    assert count(10, 20) > count(100, 200) > count(250, 255)
    # A flat image has no edges at all.
    assert count(0, 0) > 0
    assert not np.asarray(canny_edges(Image.new("RGB", (32, 32), "grey"), 0, 0)).any()


def test_canny_refuses_bad_thresholds():
    with pytest.raises(ValueError, match="low canny threshold"):
        canny_edges(square(), 200, 100)
    with pytest.raises(ValueError, match="0 to 255"):
        canny_edges(square(), 0, 300)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": square(size=32)}, "must be a 64x64 image"),
        ({"conditioning_scale": 2.5}, "conditioning scale must be 0 to 2"),
        ({"conditioning_scale": -0.1}, "conditioning scale must be 0 to 2"),
        ({"guidance_start": 0.8, "guidance_end": 0.2}, "guidance start and end"),
        ({"low_threshold": 250, "high_threshold": 10}, "low canny threshold"),
        ({"module": "depth"}, "Unknown ControlNet preprocessor"),
    ],
)
def test_bad_control_input_is_refused(control_request, cpu_config, change, message):
    request = dataclasses.replace(
        control_request, control=dataclasses.replace(control_request.control, **change)
    )
    with pytest.raises(ValueError, match=message):
        generate(request, config=cpu_config)


def test_img2img_alone_gives_the_controlnet_img2img_pipelines_image(
    control_request, cpu_config, plain_pipeline, tiny_controlnet
):
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    request = dataclasses.replace(
        control_request, init_image=Image.fromarray(gradient, "RGB"), strength=0.75, steps=8
    )

    result = generate(request, config=cpu_config)

    controlnet = ControlNetModel.from_pretrained(tiny_controlnet, dtype=torch.float32)
    pipe = StableDiffusionControlNetImg2ImgPipeline.from_pipe(plain_pipeline, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        image=request.init_image,
        control_image=canny_edges(request.control.image),
        controlnet_conditioning_scale=request.control.conditioning_scale,  # its default: 0.8
        strength=request.strength,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(request.seed),
    ).images[0]
    diff = np.abs(np.asarray(result.images[0], dtype=int) - np.asarray(expected, dtype=int))
    assert diff.max() == 0, (diff.max(), (diff > 0).mean())
