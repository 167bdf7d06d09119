"""IP-Adapter image prompts through the engine: a request alone gets the pipeline's image
(SD1.5 and SDXL), scale 0 is no adapter, batched requests keep their own image prompts,
the adapter leaves the UNet after its batch, and bad input is refused."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

from gpu_workers.engine import BatchKey
from gpu_workers.requests import GenerationFailed, IPAdapterRef
from gpu_workers.runner import generate, generate_all
from gpu_workers.tiny_models import TINY_IP_ADAPTER_WEIGHTS, build_tiny_ip_adapter


@pytest.fixture(scope="session")
def tiny_ip_adapter(tmp_path_factory):
    return build_tiny_ip_adapter(tmp_path_factory.mktemp("models") / "tiny-ip-adapter")


@pytest.fixture(scope="session")
def tiny_sdxl_ip_adapter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-ip-adapter-xl"
    return build_tiny_ip_adapter(folder, sdxl=True)


def noise_image(seed, size=(96, 80)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def ip_request(tiny_request, tiny_ip_adapter):
    ip_adapter = IPAdapterRef(model_source=str(tiny_ip_adapter), image=noise_image(1), scale=0.8)
    return dataclasses.replace(tiny_request, ip_adapter=ip_adapter)


def pixels(result):
    return np.asarray(result.images[0], dtype=int)


def pipeline_image(pipe, adapter_dir, request):
    pipe.load_ip_adapter(str(adapter_dir), subfolder="", weight_name=TINY_IP_ADAPTER_WEIGHTS)
    pipe.set_ip_adapter_scale(request.ip_adapter.scale)
    try:
        return pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            ip_adapter_image=request.ip_adapter.image,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            width=request.width,
            height=request.height,
            generator=torch.Generator("cpu").manual_seed(request.seed),
        ).images[0]
    finally:
        pipe.unload_ip_adapter()


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_a_request_alone_gives_the_pipelines_image(
    ip_request, cpu_config, plain_pipeline, tiny_ip_adapter, guidance
):
    request = dataclasses.replace(ip_request, guidance_scale=guidance)
    result = generate(request, config=cpu_config)
    pipe = StableDiffusionPipeline.from_pipe(plain_pipeline)
    expected = np.asarray(pipeline_image(pipe, tiny_ip_adapter, request), dtype=int)
    assert np.abs(pixels(result) - expected).max() == 0


def test_sdxl_request_alone_gives_the_pipelines_image(
    tiny_sdxl_model_dir, tiny_sdxl_ip_adapter, cpu_config, ip_request
):
    request = dataclasses.replace(
        ip_request,
        model_source=str(tiny_sdxl_model_dir),
        negative_prompt="",
        ip_adapter=dataclasses.replace(
            ip_request.ip_adapter, model_source=str(tiny_sdxl_ip_adapter)
        ),
    )
    result = generate(request, config=cpu_config)
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    expected = np.asarray(pipeline_image(pipe, tiny_sdxl_ip_adapter, request), dtype=int)
    assert np.abs(pixels(result) - expected).max() == 0


def test_the_image_prompt_changes_the_image_and_scale_0_is_no_adapter(ip_request, cpu_config):
    def image_with(ip_adapter):
        request = dataclasses.replace(ip_request, ip_adapter=ip_adapter)
        return pixels(generate(request, config=cpu_config))

    plain = image_with(None)
    prompted = image_with(ip_request.ip_adapter)
    other = image_with(dataclasses.replace(ip_request.ip_adapter, image=noise_image(2)))
    zero = image_with(dataclasses.replace(ip_request.ip_adapter, scale=0.0))

    assert not np.array_equal(plain, prompted)
    assert not np.array_equal(prompted, other)
    # At scale 0 the adapter adds exactly nothing to each cross-attention output.
    assert np.array_equal(plain, zero)


def test_no_adapter_is_left_in_the_model_after_its_batch(ip_request, cpu_config):
    plain_request = dataclasses.replace(ip_request, ip_adapter=None)
    before = pixels(generate(plain_request, config=cpu_config))
    generate(ip_request, config=cpu_config)
    after = pixels(generate(plain_request, config=cpu_config))
    assert np.array_equal(before, after)


def test_batched_requests_keep_their_own_image_prompts(ip_request, cpu_config):
    requests = [
        dataclasses.replace(
            ip_request,
            seed=seed,
            guidance_scale=guidance,
            ip_adapter=dataclasses.replace(ip_request.ip_adapter, image=noise_image(seed)),
        )
        for seed, guidance in [(1, 7.0), (2, 1.0), (3, 4.0)]
    ]
    assert len({BatchKey.for_request(request) for request in requests}) == 1

    batched = generate_all(requests, config=cpu_config)
    alone = [generate(request, config=cpu_config) for request in requests]

    assert {result.batch_size for result in batched} == {3}
    for together, single in zip(batched, alone, strict=True):
        assert np.array_equal(pixels(together), pixels(single))


def test_adapter_and_scale_split_batches(ip_request):
    other_scale = dataclasses.replace(
        ip_request, ip_adapter=dataclasses.replace(ip_request.ip_adapter, scale=0.5)
    )
    no_adapter = dataclasses.replace(ip_request, ip_adapter=None)
    keys = {BatchKey.for_request(r) for r in (ip_request, other_scale, no_adapter)}
    assert len(keys) == 3


def test_a_scale_out_of_range_is_refused_at_submit(ip_request, cpu_config):
    request = dataclasses.replace(
        ip_request, ip_adapter=dataclasses.replace(ip_request.ip_adapter, scale=2.5)
    )
    with pytest.raises(ValueError, match="IP-Adapter scale must be 0 to 2"):
        generate(request, config=cpu_config)


def test_an_adapter_of_another_family_fails_the_job_and_leaves_the_model_clean(
    ip_request, tiny_sdxl_ip_adapter, cpu_config
):
    plain_request = dataclasses.replace(ip_request, ip_adapter=None)
    before = pixels(generate(plain_request, config=cpu_config))
    mismatched = dataclasses.replace(
        ip_request,
        ip_adapter=dataclasses.replace(
            ip_request.ip_adapter, model_source=str(tiny_sdxl_ip_adapter)
        ),
    )
    with pytest.raises(GenerationFailed, match="does not fit the model"):
        generate(mismatched, config=cpu_config)
    assert np.array_equal(before, pixels(generate(plain_request, config=cpu_config)))


def test_an_adapter_without_its_image_encoder_is_refused(ip_request, cpu_config, tmp_path):
    from safetensors.torch import save_file

    save_file({"something.weight": torch.zeros(2)}, tmp_path / "adapter.safetensors")
    (tmp_path / "image_encoder").mkdir()
    request = dataclasses.replace(
        ip_request,
        ip_adapter=dataclasses.replace(ip_request.ip_adapter, model_source=str(tmp_path)),
    )
    with pytest.raises(GenerationFailed, match="no CLIP image encoder"):
        generate(request, config=cpu_config)


@pytest.mark.parametrize("plus", [False, True], ids=["image-embeds", "hidden-states"])
def test_image_prompts_are_encoded_as_the_pipelines_encode_image(tiny_ip_adapter, plus):
    """Plain adapters take the encoder's projected embedding (zeros unconditioned); "Plus"
    adapters, whose projection is not an ImageProjection, its penultimate hidden states
    (a black image's unconditioned), row for row as the UNet's rows."""
    from types import SimpleNamespace

    from diffusers.models.embeddings import ImageProjection

    from gpu_workers.ip_adapters import image_embeds, read_ip_adapter

    adapter = read_ip_adapter(str(tiny_ip_adapter), torch.float32)
    projection = object() if plus else ImageProjection(image_embed_dim=32)
    images = [noise_image(1), noise_image(2)]
    (embeds,) = image_embeds(adapter, images, projection, [1], torch.device("cpu"))

    pipeline = SimpleNamespace(
        image_encoder=adapter.image_encoder, feature_extractor=adapter.feature_extractor
    )
    rows = [
        StableDiffusionPipeline.encode_image(pipeline, image, torch.device("cpu"), 1, plus)
        for image in images
    ]
    expected = torch.stack([rows[1][1], rows[0][0], rows[1][0]])  # uncond of row 1, then all
    assert embeds.shape == expected.shape
    assert torch.allclose(embeds, expected, atol=1e-5)
