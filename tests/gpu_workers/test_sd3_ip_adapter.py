"""IP-Adapter for Stable Diffusion 3.x through the engine (issue #17), on the tiny SD 3.x
model and a tiny adapter in InstantX/SD3.5-Large-IP-Adapter's layout with a SigLIP image
encoder, on the CPU in fp32:
- a request alone gives exactly the pixels of StableDiffusion3Pipeline(ip_adapter_image=...)
  with the adapter loaded by its load_ip_adapter at the same scale, with and without CFG
  (img2img and inpaint: StableDiffusion3Img2ImgPipeline's and
  StableDiffusion3InpaintPipeline's);
- a request in a batch (other seeds, prompts, image prompts, guidance) gives exactly its
  pixels alone;
- an adapter of another layout is refused, naming both families (either way round)."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import (
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3InpaintPipeline,
    StableDiffusion3Pipeline,
)
from PIL import Image

from gpu_workers.ip_adapters import SD3_LAYOUT_FAMILIES, read_ip_adapter
from gpu_workers.requests import GenerationFailed, GenerationRequest, IPAdapterRef
from gpu_workers.tiny_models import (
    TINY_IP_ADAPTER_WEIGHTS,
    build_tiny_flux_ip_adapter,
    build_tiny_sd3_ip_adapter,
)
from tests.gpu_workers.engine_runs import pipeline_pixels, pixels, run_batch, sd3_inpaint_pixels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    models = tmp_path_factory.mktemp("sd3-ip-adapters")
    return {
        "sd3": build_tiny_sd3_ip_adapter(models / "sd3"),
        "flux": build_tiny_flux_ip_adapter(models / "flux"),
    }


def noise_image(seed, size=(96, 80)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def ip_request(tiny_sd3, adapters):
    return GenerationRequest(
        model_source=str(tiny_sd3),
        prompt="a cat on the mat",
        negative_prompt="blurry",
        steps=4,
        guidance_scale=5.0,
        width=64,
        height=48,
        seed=1234,
        ip_adapter=IPAdapterRef(model_source=str(adapters["sd3"]), image=noise_image(1), scale=0.8),
    )


def with_image_prompt(request, **changes):
    return dataclasses.replace(
        request, ip_adapter=dataclasses.replace(request.ip_adapter, **changes)
    )


PIPELINES = {
    "txt2img": StableDiffusion3Pipeline,
    "img2img": StableDiffusion3Img2ImgPipeline,
    "inpaint": StableDiffusion3InpaintPipeline,
}


def plain_pixels(request):
    """What the plain pipeline makes for `request`."""
    adapter = request.ip_adapter.model_source
    pipe = PIPELINES[request.mode].from_pretrained(request.model_source)
    pipe.load_ip_adapter(
        adapter,
        weight_name=TINY_IP_ADAPTER_WEIGHTS,
        image_encoder_folder=f"{adapter}/image_encoder",
    )
    pipe.set_ip_adapter_scale(request.ip_adapter.scale)
    options = {"negative_prompt": request.negative_prompt}
    if request.mode != "txt2img":
        options.update(image=request.init_image, strength=request.strength)
    options["ip_adapter_image"] = request.ip_adapter.image
    if request.mode == "inpaint":
        return sd3_inpaint_pixels(pipe, request, mask_image=request.mask_image, **options)
    return pipeline_pixels(pipe, request, **options)


def test_instantx_tensors_are_read_as_an_sd3_adapter_with_a_siglip_encoder(adapters):
    adapter = read_ip_adapter(str(adapters["sd3"]), torch.float32)

    assert adapter.made_for == SD3_LAYOUT_FAMILIES
    assert type(adapter.image_encoder).__name__ == "SiglipVisionModel"
    assert "layers.0.0.to_q.weight" in adapter.state_dict["image_proj"]  # InstantX's names
    assert "0.norm_ip.linear.weight" in adapter.state_dict["ip_adapter"]


@pytest.mark.parametrize(("scale", "guidance_scale"), [(0.8, 5.0), (1.5, 5.0), (0.8, 1.0)])
def test_a_request_alone_is_the_pipelines_image(make_engine, ip_request, scale, guidance_scale):
    request = dataclasses.replace(
        with_image_prompt(ip_request, scale=scale), guidance_scale=guidance_scale
    )
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels(request))


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_alone_are_the_pipelines_images(make_engine, ip_request, mode):
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (16, 16, 48, 40))
    request = dataclasses.replace(
        ip_request,
        init_image=noise_image(5, size=(64, 48)),
        mask_image=mask if mode == "inpaint" else None,
        strength=0.5,
    )
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels(request))


def test_the_image_prompt_changes_the_image(make_engine, ip_request):
    [prompted] = run_batch(make_engine(), [ip_request])
    [plain] = run_batch(make_engine(), [dataclasses.replace(ip_request, ip_adapter=None)])
    [other] = run_batch(make_engine(), [with_image_prompt(ip_request, image=noise_image(2))])

    assert not np.array_equal(pixels(prompted), pixels(plain))
    assert not np.array_equal(pixels(prompted), pixels(other))


def test_a_request_in_a_batch_is_itself_alone(make_engine, ip_request):
    requests = [
        ip_request,
        dataclasses.replace(
            with_image_prompt(ip_request, image=noise_image(2)), seed=7, prompt="a dog"
        ),
        dataclasses.replace(
            with_image_prompt(ip_request, image=noise_image(3, size=(40, 60))),
            steps=3,
            guidance_scale=1.0,
        ),
    ]
    batched = run_batch(make_engine(max_batch=3), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 3  # they did share calls
    for together, by_itself in zip(batched, alone, strict=True):
        assert np.array_equal(pixels(together), pixels(by_itself))


def test_a_flux_adapter_is_refused_naming_both_families(make_engine, ip_request, adapters):
    request = with_image_prompt(ip_request, model_source=str(adapters["flux"]))

    with pytest.raises(GenerationFailed, match="made for FLUX.1.*this model is Stable Diffusion 3"):
        run_batch(make_engine(), [request])


def test_an_sd3_adapter_is_refused_by_flux(make_engine, tiny_flux, ip_request):
    request = dataclasses.replace(ip_request, model_source=str(tiny_flux), negative_prompt="")

    with pytest.raises(GenerationFailed, match="made for Stable Diffusion 3.x.*this model is FLUX"):
        run_batch(make_engine(), [request])
