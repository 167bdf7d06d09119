"""IP-Adapter for FLUX.1 and SD 3.x through the engine (issue #17), on the tiny models and
tiny adapters in their layouts (FLUX.1: XLabs'; SD 3.x: InstantX/SD3.5-Large-IP-Adapter's,
with a SigLIP image encoder), on the CPU in fp32:
- a request alone gives exactly the pixels of FluxPipeline / StableDiffusion3Pipeline
  (ip_adapter_image=...) with the adapter loaded by its load_ip_adapter at the same scale
  (img2img and inpaint: the families' img2img and inpaint pipelines), SD 3.x with and
  without CFG;
- a request in a batch (other seeds, prompts, image prompts, step counts, guidance) gives
  exactly its pixels alone;
- an adapter of another layout is refused, naming both families (either way round)."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import (
    FluxImg2ImgPipeline,
    FluxInpaintPipeline,
    FluxPipeline,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3InpaintPipeline,
    StableDiffusion3Pipeline,
)
from PIL import Image

from gpu_workers.ip_adapters import FLUX_LAYOUT_FAMILIES, SD3_LAYOUT_FAMILIES, read_ip_adapter
from gpu_workers.requests import GenerationFailed, GenerationRequest, IPAdapterRef
from gpu_workers.tiny_models import (
    TINY_IP_ADAPTER_WEIGHTS,
    build_tiny_flux_ip_adapter,
    build_tiny_ip_adapter,
    build_tiny_sd3_ip_adapter,
)
from tests.gpu_workers.engine_runs import (
    mask_image,
    pipeline_pixels,
    pixels,
    run_batch,
    sd3_inpaint_pixels,
)

pytestmark = pytest.mark.slow

PIPELINES = {
    ("flux", "txt2img"): FluxPipeline,
    ("flux", "img2img"): FluxImg2ImgPipeline,
    ("flux", "inpaint"): FluxInpaintPipeline,
    ("sd3", "txt2img"): StableDiffusion3Pipeline,
    ("sd3", "img2img"): StableDiffusion3Img2ImgPipeline,
    ("sd3", "inpaint"): StableDiffusion3InpaintPipeline,
}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    models = tmp_path_factory.mktemp("ip-adapters")
    return {
        "flux": build_tiny_flux_ip_adapter(models / "flux"),
        "sd3": build_tiny_sd3_ip_adapter(models / "sd3"),
        "sd": build_tiny_ip_adapter(models / "sd"),
    }


def noise_image(seed, size=(96, 80)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def ip_request(family, flow_request, adapters):
    return dataclasses.replace(
        flow_request,
        negative_prompt=flow_request.negative_prompt if family == "sd3" else "",
        ip_adapter=IPAdapterRef(
            model_source=str(adapters[family]), image=noise_image(1), scale=0.8
        ),
    )


def with_image_prompt(request, **changes):
    return dataclasses.replace(
        request, ip_adapter=dataclasses.replace(request.ip_adapter, **changes)
    )


def plain_pixels(family, request):
    adapter = request.ip_adapter.model_source
    pipe = PIPELINES[family, request.mode].from_pretrained(request.model_source)
    if family == "flux":
        encoder = {
            "image_encoder_pretrained_model_name_or_path": f"{adapter}/image_encoder",
            "image_encoder_dtype": torch.float32,
        }
    else:
        encoder = {"image_encoder_folder": f"{adapter}/image_encoder"}
    pipe.load_ip_adapter(adapter, weight_name=TINY_IP_ADAPTER_WEIGHTS, **encoder)
    pipe.set_ip_adapter_scale(request.ip_adapter.scale)
    options = {"ip_adapter_image": request.ip_adapter.image}
    if family == "sd3":
        options["negative_prompt"] = request.negative_prompt
    if request.mode != "txt2img":
        options.update(image=request.init_image, strength=request.strength)
    if request.mode == "inpaint":
        options["mask_image"] = request.mask_image
    if (family, request.mode) == ("sd3", "inpaint"):
        return sd3_inpaint_pixels(pipe, request, **options)
    return pipeline_pixels(pipe, request, **options)


def test_xlabs_tensors_are_read_with_diffusers_names(adapters):
    adapter = read_ip_adapter(str(adapters["flux"]), torch.float32)

    assert adapter.made_for == FLUX_LAYOUT_FAMILIES
    assert sorted(adapter.state_dict["image_proj"]) == [
        "norm.bias",
        "norm.weight",
        "proj.bias",
        "proj.weight",
    ]
    assert sorted(adapter.state_dict["ip_adapter"]) == [
        "0.to_k_ip.bias",
        "0.to_k_ip.weight",
        "0.to_v_ip.bias",
        "0.to_v_ip.weight",
    ]


def test_instantx_tensors_are_read_as_an_sd3_adapter_with_a_siglip_encoder(adapters):
    adapter = read_ip_adapter(str(adapters["sd3"]), torch.float32)

    assert adapter.made_for == SD3_LAYOUT_FAMILIES
    assert type(adapter.image_encoder).__name__ == "SiglipVisionModel"
    assert "layers.0.0.to_q.weight" in adapter.state_dict["image_proj"]  # InstantX's names
    assert "0.norm_ip.linear.weight" in adapter.state_dict["ip_adapter"]


@pytest.mark.parametrize("scale", [0.8, 1.5])
def test_a_request_alone_is_the_pipelines_image(make_engine, family, ip_request, scale):
    request = with_image_prompt(ip_request, scale=scale)
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels(family, request))


def test_an_sd3_request_without_cfg_alone_is_the_pipelines_image(make_engine, tiny_sd3, adapters):
    request = GenerationRequest(
        model_source=str(tiny_sd3), prompt="a cat on the mat", negative_prompt="blurry",
        steps=4, guidance_scale=1.0, width=64, height=48, seed=1234,
        ip_adapter=IPAdapterRef(model_source=str(adapters["sd3"]), image=noise_image(1)),
    )
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels("sd3", request))


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_alone_are_the_pipelines_images(
    make_engine, family, ip_request, mode
):
    request = dataclasses.replace(
        ip_request,
        init_image=noise_image(5, size=(64, 48)),
        mask_image=mask_image() if mode == "inpaint" else None,
        strength=0.5,
    )
    [result] = run_batch(make_engine(), [request])

    assert np.array_equal(pixels(result), plain_pixels(family, request))


def test_the_image_prompt_changes_the_image(make_engine, ip_request):
    [prompted] = run_batch(make_engine(), [ip_request])
    [plain] = run_batch(make_engine(), [dataclasses.replace(ip_request, ip_adapter=None)])
    [other] = run_batch(make_engine(), [with_image_prompt(ip_request, image=noise_image(2))])

    assert not np.array_equal(pixels(prompted), pixels(plain))
    assert not np.array_equal(pixels(prompted), pixels(other))


# With batch buckets too: padded transformer calls leave each row as alone.
@pytest.mark.parametrize("buckets", [(), (1, 2, 4, 8)])
def test_a_request_in_a_batch_is_itself_alone(
    make_engine, engines, cpu_config, ip_request, buckets
):
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
    config = dataclasses.replace(cpu_config, batch_buckets=buckets)
    batched = run_batch(engines(config, max_batch=3), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 3  # they did share calls
    for together, by_itself in zip(batched, alone, strict=True):
        assert np.array_equal(pixels(together), pixels(by_itself))


@pytest.mark.parametrize(
    ("family", "other", "message"),
    [
        ("flux", "sd", "made for Stable Diffusion or SDXL.*FLUX.1"),
        ("flux", "sd3", "made for Stable Diffusion 3.x.*this model is FLUX"),
        ("sd3", "flux", "made for FLUX.1.*this model is Stable Diffusion 3"),
    ],
)
def test_an_adapter_of_another_family_is_refused_naming_both(
    make_engine, ip_request, adapters, other, message
):
    request = with_image_prompt(ip_request, model_source=str(adapters[other]))

    with pytest.raises(GenerationFailed, match=message):
        run_batch(make_engine(), [request])


@pytest.mark.parametrize("family", ["flux"])
def test_an_xlabs_adapter_is_refused_by_stable_diffusion(make_engine, tiny_sd15, ip_request):
    request = dataclasses.replace(ip_request, model_source=str(tiny_sd15), width=64, height=64)

    with pytest.raises(GenerationFailed, match="made for FLUX.1.*Stable Diffusion or SDXL"):
        run_batch(make_engine(), [request])
