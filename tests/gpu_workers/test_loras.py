"""LoRAs in the engine: cached by SHA-256, applied with their weights, stacked, switched
without reloading, and never leaking into the next job."""

import dataclasses
import hashlib
from unittest import mock

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from gpu_workers.engine import BatchKey
from gpu_workers.loras import _loaded
from gpu_workers.pipelines import load_pipeline
from gpu_workers.requests import GenerationFailed, LoraRef
from gpu_workers.runner import generate

ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")


def build_lora(model_dir, folder, seed, *, rank=4, targets=ATTENTION):
    """A random LoRA on the tiny UNet's attention (or `targets`), saved as diffusers
    writes LoRAs."""
    pipe = StableDiffusionPipeline.from_pretrained(
        model_dir, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                target_modules=list(targets),
                init_lora_weights=False,  # random, so that it changes the image
            )
        )
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet), safe_serialization=True
    )
    path = folder / "pytorch_lora_weights.safetensors"
    return LoraRef(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), source=str(path),
                   name=f"lora-{seed}")


@pytest.fixture(scope="session")
def loras(tiny_sd15, tmp_path_factory):
    return [build_lora(tiny_sd15, tmp_path_factory.mktemp(f"lora{n}"), seed=n) for n in (1, 2)]


@pytest.fixture
def config(cpu_config, tmp_path):
    return dataclasses.replace(cpu_config, lora_cache_dir=str(tmp_path / "lora-cache"))


def pixels(request, config):
    return np.asarray(generate(request, config=config).images[0])


def test_a_lora_changes_the_image_by_its_weight(tiny_request, config, loras):
    plain = pixels(tiny_request, config)
    full = pixels(dataclasses.replace(tiny_request, loras=(loras[0],)), config)
    half_lora = dataclasses.replace(loras[0], weight=0.5)
    half = pixels(dataclasses.replace(tiny_request, loras=(half_lora,)), config)

    assert not np.array_equal(plain, full)
    assert not np.array_equal(full, half)


def test_a_job_without_loras_after_a_lora_job_is_unaffected(tiny_request, config, loras):
    before = pixels(tiny_request, config)
    pixels(dataclasses.replace(tiny_request, loras=tuple(loras)), config)

    assert np.array_equal(pixels(tiny_request, config), before)


def test_stacked_loras_differ_from_each_alone(tiny_request, config, loras):
    both = pixels(dataclasses.replace(tiny_request, loras=tuple(loras)), config)
    for lora in loras:
        assert not np.array_equal(both, pixels(dataclasses.replace(tiny_request, loras=(lora,)),
                                               config))


def test_switching_back_gives_the_same_image_without_reloading(tiny_request, config, loras):
    first = dataclasses.replace(tiny_request, loras=(loras[0],))
    before = pixels(first, config)
    pixels(dataclasses.replace(tiny_request, loras=(loras[1],)), config)
    pipe = load_pipeline(tiny_request.model_source, config)
    loaded = sorted(pipe.get_list_adapters()["unet"])

    assert np.array_equal(pixels(first, config), before)
    assert sorted(pipe.get_list_adapters()["unet"]) == loaded  # nothing loaded again


def test_files_are_cached_once_by_their_hash(tiny_request, config, loras, tmp_path):
    pixels(dataclasses.replace(tiny_request, loras=(loras[0],)), config)
    cached = tmp_path / "lora-cache" / f"{loras[0].sha256}.safetensors"
    assert cached.exists()
    assert list((tmp_path / "lora-cache").glob("*.part")) == []


def test_a_file_whose_hash_changed_is_refused(tiny_request, config, loras):
    tampered = dataclasses.replace(loras[0], sha256="0" * 64)
    with pytest.raises(GenerationFailed, match="changed or is damaged"):
        generate(dataclasses.replace(tiny_request, loras=(tampered,)), config=config)


def test_a_missing_file_is_refused(tiny_request, config, loras):
    gone = dataclasses.replace(loras[0], sha256="1" * 64, source="/nowhere/x.safetensors")
    with pytest.raises(GenerationFailed, match="missing from storage"):
        generate(dataclasses.replace(tiny_request, loras=(gone,)), config=config)


def test_least_recently_used_adapters_are_unloaded(tiny_request, config, loras):
    one = dataclasses.replace(config, max_loaded_loras=1)
    for lora in loras:
        pixels(dataclasses.replace(tiny_request, loras=(lora,)), one)
    pipe = load_pipeline(tiny_request.model_source, one)

    assert list(_loaded[pipe].values()) == [loras[1].sha256]


def test_past_the_limit_a_lora_is_hotswapped_into_the_oldest_slot(
    tiny_request, config, loras, tiny_sd15, tmp_path
):
    one = dataclasses.replace(config, max_loaded_loras=1)
    higher_rank = build_lora(tiny_sd15, tmp_path / "rank8", seed=3, rank=8)
    pixels(dataclasses.replace(tiny_request, loras=(loras[0],)), one)
    pipe = load_pipeline(tiny_request.model_source, one)
    slots = pipe.get_list_adapters()["unet"]

    with mock.patch.object(pipe, "load_lora_weights", wraps=pipe.load_lora_weights) as load:
        swapped = [pixels(dataclasses.replace(tiny_request, loras=(lora,)), one)
                   for lora in (loras[1], higher_rank)]

    assert [call.kwargs.get("hotswap") for call in load.call_args_list] == [True, True]
    assert pipe.get_list_adapters()["unet"] == slots  # the same layers, new weights
    # Exactly the images of the same LoRAs loaded afresh on another pipeline.
    for lora, image in zip((loras[1], higher_rank), swapped, strict=True):
        assert np.array_equal(image, pixels(dataclasses.replace(tiny_request, loras=(lora,)),
                                            config))


def test_a_lora_on_other_layers_replaces_the_oldest_slot(
    tiny_request, config, loras, tiny_sd15, tmp_path
):
    one = dataclasses.replace(config, max_loaded_loras=1)
    wider = build_lora(tiny_sd15, tmp_path / "wider", seed=4, targets=(*ATTENTION, "proj_in"))
    pixels(dataclasses.replace(tiny_request, loras=(loras[0],)), one)

    image = pixels(dataclasses.replace(tiny_request, loras=(wider,)), one)

    pipe = load_pipeline(tiny_request.model_source, one)
    assert list(_loaded[pipe].values()) == [wider.sha256]
    assert np.array_equal(image, pixels(dataclasses.replace(tiny_request, loras=(wider,)), config))
    plain = pixels(tiny_request, one)
    assert np.array_equal(plain, pixels(tiny_request, config))  # and nothing leaks


def test_requests_with_other_loras_or_weights_never_share_a_batch(tiny_request, loras):
    key = BatchKey.for_request(dataclasses.replace(tiny_request, loras=(loras[0],)))
    others = [
        tiny_request,
        dataclasses.replace(tiny_request, loras=(loras[1],)),
        dataclasses.replace(tiny_request, loras=(dataclasses.replace(loras[0], weight=0.7),)),
        dataclasses.replace(tiny_request, loras=tuple(loras)),
    ]
    assert all(BatchKey.for_request(request) != key for request in others)
