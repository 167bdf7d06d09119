"""ControlNet for FLUX.1 and SD 3.x through the engine (issue #17), on the tiny models and
their tiny ControlNets, on the CPU in fp32:
- a request alone gives exactly the pixels of FluxControlNetPipeline /
  StableDiffusion3ControlNetPipeline with the same settings, conditioning scale and span,
  and for FLUX.1 img2img and inpaint FluxControlNetImg2ImgPipeline's /
  FluxControlNetInpaintPipeline's (SD 3.x: txt2img only, diffusers has no such pipeline);
- a request in a batch (other seeds, prompts, scales, spans, step counts) gives exactly the
  pixels it gets alone;
- a ControlNet of another family is refused, naming both families."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import (
    FluxControlNetImg2ImgPipeline,
    FluxControlNetInpaintPipeline,
    FluxControlNetModel,
    FluxControlNetPipeline,
    SD3ControlNetModel,
    StableDiffusion3ControlNetPipeline,
)
from PIL import Image

from gpu_workers.requests import ControlRef, GenerationFailed, GenerationRequest
from gpu_workers.tiny_models import (
    build_tiny_controlnet,
    build_tiny_flux_controlnet,
    build_tiny_sd3_controlnet,
)
from tests.gpu_workers.engine_runs import (
    mask_image,
    pipeline_pixels,
    pixels,
    run_batch,
    source_image,
)

pytestmark = pytest.mark.slow

PIPELINES = {
    ("flux", "txt2img"): FluxControlNetPipeline,
    ("flux", "img2img"): FluxControlNetImg2ImgPipeline,
    ("flux", "inpaint"): FluxControlNetInpaintPipeline,
    ("sd3", "txt2img"): StableDiffusion3ControlNetPipeline,
}
CONTROLNET_CLASSES = {"flux": FluxControlNetModel, "sd3": SD3ControlNetModel}


@pytest.fixture(scope="module")
def controlnets(tmp_path_factory):
    models = tmp_path_factory.mktemp("controlnets")
    return {
        "flux": build_tiny_flux_controlnet(models / "flux"),
        "sd3": build_tiny_sd3_controlnet(models / "sd3"),
        "xlabs": build_tiny_flux_controlnet(models / "xlabs", xlabs=True),
    }


@pytest.fixture
def control_request(family, flow_request, controlnets):
    control = ControlRef(model_source=str(controlnets[family]), image=square())
    return dataclasses.replace(flow_request, control=control)


def square(size=(64, 48), box=(16, 8, 48, 40)):
    image = Image.new("RGB", size, (0, 0, 0))
    image.paste((255, 255, 255), box)
    return image


def plain_pixels(family, request):
    """What plain diffusers' ControlNet pipeline makes for `request`, given the canny edges
    the worker conditions on. StableDiffusion3ControlNetPipeline samples the control image's
    latents from torch's global generator: seeded with the request's seed first."""
    from gpu_workers.control import control_image_from

    controlnet = CONTROLNET_CLASSES[family].from_pretrained(request.control.model_source)
    pipeline_class = PIPELINES[family, request.mode]
    pipe = pipeline_class.from_pretrained(request.model_source, controlnet=controlnet)
    control = request.control
    options = {"negative_prompt": request.negative_prompt} if family == "sd3" else {}
    if request.mode != "txt2img":
        options.update(image=request.init_image, strength=request.strength)
    if request.mode == "inpaint":
        options["mask_image"] = request.mask_image
    torch.manual_seed(request.seed)
    return pipeline_pixels(
        pipe,
        request,
        control_image=control_image_from(control.image, request.width, request.height),
        controlnet_conditioning_scale=control.conditioning_scale,
        control_guidance_start=control.guidance_start,
        control_guidance_end=control.guidance_end,
        **options,
    )


def with_control(request, **changes):
    return dataclasses.replace(request, control=dataclasses.replace(request.control, **changes))


@pytest.mark.parametrize(
    ("scale", "start", "end"), [(1.0, 0.0, 1.0), (0.6, 0.25, 0.75), (1.5, 0.5, 1.0)]
)
def test_a_request_alone_is_the_controlnet_pipelines_image(
    make_engine, family, control_request, scale, start, end
):
    request = with_control(
        control_request, conditioning_scale=scale, guidance_start=start, guidance_end=end
    )
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels(family, request))


def test_an_xlabs_controlnet_alone_is_the_pipelines_image(make_engine, tiny_flux, controlnets):
    """XLabs' FLUX.1 ControlNets read the control image's pixels through their hint block."""
    request = GenerationRequest(
        model_source=str(tiny_flux),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=4,
        guidance_scale=3.5,
        width=64,
        height=48,
        seed=99,
        control=ControlRef(
            model_source=str(controlnets["xlabs"]), image=square(), conditioning_scale=0.8
        ),
    )
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels("flux", request))
    [plain] = run_batch(make_engine(), [dataclasses.replace(request, control=None)])
    assert not np.array_equal(pixels(result), pixels(plain))


def test_the_controlnet_changes_the_image(make_engine, control_request):
    [controlled] = run_batch(make_engine(), [control_request])
    [plain] = run_batch(make_engine(), [dataclasses.replace(control_request, control=None)])
    [other_image] = run_batch(
        make_engine(), [with_control(control_request, image=square(box=(0, 0, 24, 24)))]
    )

    assert not np.array_equal(pixels(controlled), pixels(plain))
    assert not np.array_equal(pixels(controlled), pixels(other_image))


@pytest.mark.parametrize("layout", ["sd3", "xlabs"])
def test_at_scale_0_a_controlnet_that_draws_no_noise_changes_nothing(
    make_engine, tiny_flux, tiny_sd3, controlnets, layout
):
    """SD 3.x samples the control image's latents apart from the row's noise, and XLabs'
    FLUX.1 ControlNets read its pixels, so at scale 0 they add zeros: the image without a
    ControlNet. (InstantX's FLUX.1 ones sample the latents with the row's generator before
    its noise, as FluxControlNetPipeline does, so their noise, and image, differ.)"""
    request = GenerationRequest(
        model_source=str(tiny_sd3 if layout == "sd3" else tiny_flux),
        prompt="a cat on the mat",
        negative_prompt="blurry",
        steps=4,
        guidance_scale=5.0,
        width=64,
        height=48,
        seed=1234,
        control=ControlRef(
            model_source=str(controlnets[layout]), image=square(), conditioning_scale=0.0
        ),
    )
    [at_zero] = run_batch(make_engine(), [request])
    [without] = run_batch(make_engine(), [dataclasses.replace(request, control=None)])

    assert np.array_equal(pixels(at_zero), pixels(without))


# With batch buckets too: padded transformer and ControlNet calls leave each row as alone.
@pytest.mark.parametrize("buckets", [(), (1, 2, 4, 8)])
def test_a_row_in_a_batch_is_its_image_alone(
    make_engine, engines, cpu_config, control_request, buckets
):
    requests = [
        control_request,
        dataclasses.replace(control_request, prompt="the mat", seed=7, steps=6),
        with_control(
            dataclasses.replace(control_request, seed=8),
            image=square(box=(0, 0, 24, 24)),
            conditioning_scale=0.5,
        ),
        with_control(
            dataclasses.replace(control_request, seed=9, steps=3, guidance_scale=1.0),
            guidance_start=0.4,
            guidance_end=0.9,
        ),
    ]
    config = dataclasses.replace(cpu_config, batch_buckets=buckets)
    batched = run_batch(engines(config, max_batch=4), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 4  # they did share calls
    for n, (in_batch, by_itself) in enumerate(zip(batched, alone, strict=True)):
        assert np.array_equal(pixels(in_batch), pixels(by_itself)), n


def test_a_controlnet_of_another_family_is_refused(
    make_engine, family, control_request, controlnets, tmp_path
):
    other = {"flux": "sd3", "sd3": "flux"}[family]
    names = {"flux": "FLUX.1", "sd3": "Stable Diffusion 3.x"}
    sd15 = build_tiny_controlnet(tmp_path / "sd15")
    for source, its_family in [(controlnets[other], names[other]), (sd15, "Stable Diffusion")]:
        request = with_control(control_request, model_source=str(source), name="edges")
        message = rf"edges is a {its_family} ControlNet; this model is {names[family]}"
        with pytest.raises(GenerationFailed, match=message):
            run_batch(make_engine(), [request])


@pytest.mark.parametrize("xlabs", [False, True])
@pytest.mark.parametrize(("mode", "strength"), [("img2img", 0.75), ("inpaint", 0.5)])
def test_flux_img2img_and_inpaint_alone_are_the_controlnet_pipelines_images(
    make_engine, tiny_flux, controlnets, mode, strength, xlabs
):

    request = GenerationRequest(
        model_source=str(tiny_flux),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=4,
        guidance_scale=3.5,
        width=64,
        height=48,
        seed=1234,
        init_image=source_image(),
        strength=strength,
        mask_image=mask_image() if mode == "inpaint" else None,
        control=ControlRef(
            model_source=str(controlnets["xlabs" if xlabs else "flux"]),
            image=square(),
            conditioning_scale=0.7,
            guidance_end=0.75,
        ),
    )
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels("flux", request))
    [plain] = run_batch(make_engine(), [dataclasses.replace(request, control=None)])
    assert not np.array_equal(pixels(result), pixels(plain))


def test_flux_inpaint_rows_in_a_batch_are_their_images_alone(make_engine, tiny_flux, controlnets):

    first = GenerationRequest(
        model_source=str(tiny_flux),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=4,
        guidance_scale=3.5,
        width=64,
        height=48,
        seed=1234,
        init_image=source_image(),
        strength=0.75,
        mask_image=mask_image(),
        control=ControlRef(model_source=str(controlnets["flux"]), image=square()),
    )
    requests = [
        first,
        with_control(dataclasses.replace(first, seed=7, steps=6), conditioning_scale=0.4),
        with_control(dataclasses.replace(first, seed=8, strength=1.0), guidance_start=0.5),
    ]
    batched = run_batch(make_engine(max_batch=3), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 3
    for n, (in_batch, by_itself) in enumerate(zip(batched, alone, strict=True)):
        assert np.array_equal(pixels(in_batch), pixels(by_itself)), n


def test_sd3_controlnet_beyond_txt2img_is_refused_naming_the_family(
    make_engine, tiny_sd3, controlnets
):
    request = GenerationRequest(
        model_source=str(tiny_sd3),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=4,
        guidance_scale=5.0,
        width=64,
        height=48,
        seed=1234,
        init_image=square(),
        strength=0.5,
        control=ControlRef(model_source=str(controlnets["sd3"]), image=square()),
    )
    message = "Stable Diffusion 3.x models don't support ControlNet beyond txt2img"
    with pytest.raises(GenerationFailed, match=message):
        run_batch(make_engine(), [request])
