"""SDXL through the engine, with the guarantees SD1.5 has (see test_engine_batching.py for
what "identical" means on a CPU):

- a request alone gets exactly the pixels of StableDiffusionXLPipeline (txt2img),
  StableDiffusionXLImg2ImgPipeline and StableDiffusionXLInpaintPipeline with the same seed;
- in a batch, prompts, negative prompts, seeds and guidance differ per row, and each image
  equals the one made alone;
- SD1.5 and SDXL requests never share a batch;
- the tiny SDXL model loads from a diffusers folder and from a single .safetensors file;
  refiners and mismatched configs are refused with a message.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import (
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from safetensors.torch import load_file, save_file

from gpu_workers import pipelines
from gpu_workers.checkpoints import checkpoint_architecture, save_original_layout
from gpu_workers.engine import BatchKey
from gpu_workers.pipelines import SDXL_REFINER_REFUSAL, load_pipeline, loaded_sources
from gpu_workers.requests import GenerationFailed
from gpu_workers.samplers import fresh_scheduler
from gpu_workers.tiny_models import TINY_SDXL_NAME, build_tiny_sdxl
from tests.gpu_workers.engine_runs import pixels, run_batch

WIDTH, HEIGHT = 64, 48  # not square: SDXL's size conditioning is (height, width)


@pytest.fixture(scope="module")
def tiny_sdxl(tiny_sdxl_model_dir):
    return tiny_sdxl_model_dir


@pytest.fixture(scope="module")
def plain_sdxl(tiny_sdxl):
    """The tiny SDXL model as plain diffusers loads it, outside the worker's cache."""
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def sdxl_request(tiny_request, tiny_sdxl):
    return dataclasses.replace(
        tiny_request, model_source=str(tiny_sdxl), width=WIDTH, height=HEIGHT, steps=4
    )


@pytest.fixture
def varied_requests(sdxl_request):
    """Compatible requests that differ in everything a batch lets differ: an empty negative
    prompt (zeros, as SDXL's pipeline makes it), a written one, no CFG (guidance 1)."""
    return [
        sdxl_request,
        dataclasses.replace(sdxl_request, prompt="the dog", negative_prompt="", seed=7),
        dataclasses.replace(sdxl_request, prompt="a red car", guidance_scale=1.0, seed=8),
        dataclasses.replace(sdxl_request, negative_prompt="ugly, text", guidance_scale=3.5),
    ]


@pytest.fixture
def source_image():
    gradient = np.linspace(0, 255, WIDTH * HEIGHT * 3).reshape(HEIGHT, WIDTH, 3)
    return Image.fromarray(gradient.astype(np.uint8), "RGB")


@pytest.fixture
def mask_image():
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[8:40, 16:48] = 255
    return Image.fromarray(mask, "L")


def generator(request):
    return torch.Generator("cpu").manual_seed(request.seed)


def common_arguments(request):
    """The request as SDXL pipeline arguments: an empty negative prompt is none at all, and
    A1111's clip skip counts from SDXL's default layer (the pipeline's clip_skip=None)."""
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt or None,
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "clip_skip": None if request.clip_skip == 1 else request.clip_skip - 1,
        "generator": generator(request),
    }


def plain_txt2img(pipe, request):
    arguments = common_arguments(request)
    if arguments["clip_skip"] is not None and request.negative_prompt:
        # The engine reads the negative prompt at the clip skip too, as A1111 does; the
        # pipeline's clip_skip skips only the prompt's layers.
        embeds, _, pooled, _ = pipe.encode_prompt(
            request.negative_prompt,
            do_classifier_free_guidance=False,
            clip_skip=arguments["clip_skip"],
        )
        arguments |= {
            "negative_prompt": None,
            "negative_prompt_embeds": embeds,
            "negative_pooled_prompt_embeds": pooled,
        }
    output = pipe(**arguments, width=request.width, height=request.height)
    return np.asarray(output.images[0])


def test_tiny_sdxl_is_a_normal_deterministic_diffusers_folder(tiny_sdxl, tmp_path):
    assert tiny_sdxl.name == TINY_SDXL_NAME
    model_index = json.loads((tiny_sdxl / "model_index.json").read_text())
    assert model_index["_class_name"] == "StableDiffusionXLPipeline"
    assert model_index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert model_index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert model_index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]
    assert model_index["scheduler"] == ["diffusers", "EulerDiscreteScheduler"]
    assert model_index["force_zeros_for_empty_prompt"] is True
    assert not list(tiny_sdxl.rglob("*.bin"))
    unet_config = json.loads((tiny_sdxl / "unet" / "config.json").read_text())
    assert unet_config["addition_embed_type"] == "text_time"

    rebuilt = build_tiny_sdxl(tmp_path / "again")
    for weights in (
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder_2/model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ):
        built, reference = load_file(rebuilt / weights), load_file(tiny_sdxl / weights)
        assert built.keys() == reference.keys()
        assert all(torch.equal(built[name], reference[name]) for name in built)
    assert build_tiny_sdxl(tiny_sdxl) == tiny_sdxl  # idempotent


def test_loads_through_load_pipeline_with_sdxl_architecture(tiny_sdxl, cpu_config):
    pipe = load_pipeline(str(tiny_sdxl), cpu_config)

    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert pipe.watermark is None
    hidden = pipe.text_encoder.config.hidden_size, pipe.text_encoder_2.config.hidden_size
    assert hidden[0] != hidden[1]  # like ViT-L and ViT-bigG
    assert pipe.unet.config.cross_attention_dim == sum(hidden)
    assert pipe.tokenizer_2.pad_token == "!"  # OpenCLIP's padding
    assert pipe.vae.config.scaling_factor == 0.13025
    assert pipe.device.type == "cpu" and pipe.unet.dtype == cpu_config.dtype
    img2img = load_pipeline(str(tiny_sdxl), cpu_config, mode="img2img")
    assert isinstance(img2img, StableDiffusionXLImg2ImgPipeline)
    assert img2img.unet is pipe.unet  # modes share one set of weights


def test_alone_equals_the_sdxl_pipeline(make_engine, plain_sdxl, varied_requests):
    requests = [*varied_requests, dataclasses.replace(varied_requests[0], clip_skip=2)]

    results = run_batch(make_engine(max_batch=1, max_wait_ms=0), requests)

    for result, request in zip(results, requests, strict=True):
        assert result.batch_size == 1
        assert result.images[0].size == (WIDTH, HEIGHT)
        assert np.array_equal(pixels(result), plain_txt2img(plain_sdxl, request))
    assert not np.array_equal(pixels(results[0]), pixels(results[-1]))  # clip skip was used


def test_batched_equals_alone(make_engine, varied_requests, sdxl_request):
    alone = run_batch(make_engine(max_batch=1, max_wait_ms=0), varied_requests)
    batched = run_batch(make_engine(max_wait_ms=0), varied_requests)
    strangers = [dataclasses.replace(sdxl_request, prompt=f"stranger {n}", seed=n) for n in (1, 2)]
    first_among_strangers = run_batch(make_engine(max_wait_ms=0), [sdxl_request, *strangers])[0]

    assert [result.batch_size for result in batched] == [4] * 4
    for batched_result, alone_result in zip(batched, alone, strict=True):
        assert np.array_equal(pixels(batched_result), pixels(alone_result))
    assert np.array_equal(pixels(first_among_strangers), pixels(batched[0]))
    assert len({pixels(result).tobytes() for result in batched}) == 4


def test_rows_joining_at_other_steps_equal_alone(make_engine, varied_requests):
    """Pooled prompts and size conditions per row, rows a few steps apart."""
    requests = [
        dataclasses.replace(request, steps=steps, sampler=sampler)
        for request, steps, sampler in zip(
            varied_requests, (6, 3, 4, 5), ("Euler", "DPM++ 2M", "Euler a", "Heun"), strict=True
        )
    ]
    alone = run_batch(make_engine(max_batch=1), requests)
    engine = make_engine()
    joined = []

    joined_at = {1: requests[1:2], 3: requests[2:]}

    def on_step(step, total):
        joined.extend(engine.submit(request) for request in joined_at.get(step, []))

    first = engine.submit(requests[0], on_step=on_step)
    engine.start()
    results = [first.result(), *(future.result() for future in joined)]

    assert all(result.batch_size > 1 for result in results)
    for result, alone_result in zip(results, alone, strict=True):
        assert np.array_equal(pixels(result), pixels(alone_result))


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras"])
def test_a_named_sampler_gives_the_pipelines_image(make_engine, plain_sdxl, sdxl_request, sampler):
    # Euler a draws noise every step from each row's own generator; DPM++ 2M keeps history.
    request = dataclasses.replace(sdxl_request, sampler=sampler)
    pipe = StableDiffusionXLPipeline.from_pipe(plain_sdxl)
    pipe.scheduler = fresh_scheduler(plain_sdxl, sampler)

    result = run_batch(make_engine(max_batch=1, max_wait_ms=0), [request])[0]

    assert np.array_equal(pixels(result), plain_txt2img(pipe, request))


def test_guidance_embedding_unets_batch_too(make_engine, tiny_sdxl, tmp_path, sdxl_request):
    """LCM-distilled SDXL UNets take guidance as an input instead of running CFG."""
    folder = shutil.copytree(tiny_sdxl, tmp_path / "lcm-sdxl")
    config = json.loads((folder / "unet" / "config.json").read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": 16})
    unet.save_pretrained(folder / "unet")
    requests = [
        dataclasses.replace(sdxl_request, model_source=str(folder), guidance_scale=guidance)
        for guidance in (8.0, 2.0)
    ]
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    alone = run_batch(make_engine(max_batch=1, max_wait_ms=0), requests)
    batched = run_batch(make_engine(max_wait_ms=0), requests)

    for alone_result, batched_result, request in zip(alone, batched, requests, strict=True):
        assert np.array_equal(pixels(alone_result), plain_txt2img(pipe, request))
        assert np.array_equal(pixels(batched_result), pixels(alone_result))
    assert not np.array_equal(pixels(alone[0]), pixels(alone[1]))  # guidance was used


def test_img2img_alone_and_in_a_batch(make_engine, plain_sdxl, sdxl_request, source_image):
    request = dataclasses.replace(sdxl_request, init_image=source_image, strength=0.5, steps=8)
    flipped = source_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    other = dataclasses.replace(request, init_image=flipped, prompt="a boat", seed=9)
    pipe = StableDiffusionXLImg2ImgPipeline.from_pipe(plain_sdxl)
    steps = []

    alone = run_batch(
        make_engine(max_batch=1, max_wait_ms=0), [request], on_step=lambda *s: steps.append(s)
    )[0]
    batched = run_batch(make_engine(max_wait_ms=0), [request, other])

    expected = pipe(
        **common_arguments(request), image=request.init_image, strength=request.strength
    ).images[0]
    assert np.array_equal(pixels(alone), np.asarray(expected))
    assert steps == [(step, 4) for step in range(1, 5)]  # 8 steps at strength 0.5
    assert batched[0].batch_size == 2
    assert np.array_equal(pixels(batched[0]), pixels(alone))


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_inpaint_alone_is_the_inpaint_pipelines_image(
    make_engine, plain_sdxl, sdxl_request, source_image, mask_image, strength
):
    request = dataclasses.replace(
        sdxl_request, init_image=source_image, mask_image=mask_image, strength=strength, steps=6
    )
    pipe = StableDiffusionXLInpaintPipeline.from_pipe(plain_sdxl)

    result = run_batch(make_engine(max_batch=1, max_wait_ms=0), [request])[0]

    expected = pipe(
        **common_arguments(request),
        image=request.init_image,
        mask_image=request.mask_image,
        strength=request.strength,
        width=WIDTH,
        height=HEIGHT,
    ).images[0]
    assert np.array_equal(pixels(result), np.asarray(expected))
    redrawn = np.asarray(mask_image) > 0
    assert not np.array_equal(pixels(result)[redrawn], np.asarray(source_image)[redrawn])


def test_an_sdxl_inpainting_model(make_engine, sdxl_request, source_image, mask_image, tmp_path):
    folder = build_tiny_sdxl(tmp_path / "tiny-sdxl-inpaint", inpaint=True)
    request = dataclasses.replace(
        sdxl_request,
        model_source=str(folder),
        init_image=source_image,
        mask_image=mask_image,
        strength=1.0,
    )
    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    engine = make_engine(max_batch=1, max_wait_ms=0)
    inpaint = engine.submit(request)
    txt2img = engine.submit(dataclasses.replace(request, init_image=None, mask_image=None))
    engine.start()

    expected = pipe(
        **common_arguments(request),
        image=source_image,
        mask_image=mask_image,
        strength=1.0,
        width=WIDTH,
        height=HEIGHT,
    ).images[0]
    assert pipe.unet.config.in_channels == 9
    assert np.array_equal(pixels(inpaint.result(timeout=120)), np.asarray(expected))
    with pytest.raises(GenerationFailed, match="This is an inpainting model"):
        txt2img.result(timeout=120)


def test_sd15_and_sdxl_requests_never_share_a_batch(make_engine, tiny_request, sdxl_request):
    # Same size, steps and everything else the key holds: only the family differs.
    sd15 = dataclasses.replace(tiny_request, width=WIDTH, height=HEIGHT, steps=4)
    requests = [sd15, sdxl_request, dataclasses.replace(sd15, seed=2)]
    requests.append(dataclasses.replace(sdxl_request, seed=2))

    results = run_batch(make_engine(max_wait_ms=0), requests)

    assert BatchKey.for_request(sd15).family == "sd"
    assert BatchKey.for_request(sdxl_request).family == "sdxl"
    assert [result.batch_size for result in results] == [2, 2, 2, 2]
    assert all(result.images[0].size == (WIDTH, HEIGHT) for result in results)


def test_the_family_is_known_before_loading_only_from_local_files(tmp_path, tiny_sdxl):
    assert pipelines.model_family(str(tiny_sdxl)) == "sdxl"
    # A Hub id not in the local cache: nothing is downloaded to find out.
    assert pipelines.model_family("nobody/not-in-the-cache") is None
    assert pipelines.model_family(str(tmp_path / "missing.safetensors")) is None


def test_progress_and_previews_for_every_request(make_engine, varied_requests):
    events = [[] for _ in varied_requests]
    engine = make_engine(max_wait_ms=0, preview_interval_s=0)
    futures = [
        engine.submit(
            request,
            on_step=lambda step, total, log=log: log.append((step, total)),
            on_preview=lambda step, image, log=log: log.append((step, image)),
        )
        for request, log in zip(varied_requests, events, strict=True)
    ]
    engine.start()
    for future in futures:
        future.result(timeout=120)

    for request_events in events:
        steps = [event for event in request_events if isinstance(event[1], int)]
        previews = [image for _, image in request_events if isinstance(image, Image.Image)]
        assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert len(previews) == 3
        assert all(image.mode == "RGB" and image.size == (8, 6) for image in previews)


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_single_file_checkpoint_loads_and_generates_the_same_image(
    make_engine, plain_sdxl, tiny_sdxl, sdxl_request, tmp_path, cpu_config
):
    path = save_original_layout(plain_sdxl, tmp_path / "tiny-sdxl.safetensors")
    assert checkpoint_architecture(path) == "sdxl"

    pipe = load_pipeline(str(path), cpu_config, model_config=str(tiny_sdxl))

    assert isinstance(pipe, StableDiffusionXLPipeline)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        loaded, original = getattr(pipe, name).state_dict(), getattr(plain_sdxl, name)
        original = original.state_dict()
        assert loaded.keys() == original.keys(), name
        assert all(torch.equal(loaded[key], original[key]) for key in original), name
    assert loaded_sources() == [str(path)]
    request = dataclasses.replace(sdxl_request, model_source=str(path), model_config=str(tiny_sdxl))
    result = run_batch(make_engine(max_wait_ms=0), [request])[0]
    assert np.array_equal(pixels(result), plain_txt2img(plain_sdxl, request))


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_an_sdxl_refiner_is_refused_before_loading(tmp_path, cpu_config, monkeypatch):
    (tmp_path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionXLImg2ImgPipeline",
                "requires_aesthetics_score": True,
                "text_encoder": [None, None],
                "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            }
        )
    )
    loads = []
    monkeypatch.setattr(
        pipelines.StableDiffusionXLPipeline, "from_pretrained", lambda *a, **k: loads.append(a)
    )

    with pytest.raises(GenerationFailed, match="SDXL refiner models"):
        load_pipeline(str(tmp_path), cpu_config)
    assert loads == []
    assert loaded_sources() == []


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_an_sdxl_refiner_single_file_is_refused_from_its_header(tmp_path, cpu_config):
    path = tmp_path / "refiner.safetensors"
    names = [
        "model.diffusion_model.input_blocks.0.0.weight",
        "conditioner.embedders.0.model.positional_embedding",
    ]
    save_file({name: torch.zeros(1) for name in names}, str(path))

    with pytest.raises(GenerationFailed) as refused:
        load_pipeline(str(path), cpu_config)
    assert str(refused.value) == SDXL_REFINER_REFUSAL


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_single_file_with_another_familys_config_is_refused(
    plain_sdxl, tiny_sd15, tmp_path, cpu_config
):
    path = save_original_layout(plain_sdxl, tmp_path / "xl.safetensors")

    with pytest.raises(GenerationFailed, match="is an SDXL checkpoint but its Diffusers config"):
        load_pipeline(str(path), cpu_config, model_config=str(tiny_sd15))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": 60}, "multiples of 8, not 60x48"),
        ({"clip_skip": 13}, "clip_skip must be 1 to 12"),
        ({"sampler": "Karras"}, "Unknown sampler 'Karras'"),
    ],
)
def test_bad_requests_are_refused_at_submit(make_engine, sdxl_request, change, message):
    with pytest.raises(ValueError, match=message):
        make_engine().submit(dataclasses.replace(sdxl_request, **change))
