"""LoRAs on FLUX.1 and SD 3.x pipelines (issue #17), through gpu_workers.loras as the
engine applies them: each layout users download changes the tiny models' image, weight 0
and a batch without LoRAs give the base image bitwise, LoRAs stack with their weights and
are hotswapped into the least recently used slot, and a LoRA of another family is refused
naming both families."""

import dataclasses
import hashlib
from unittest import mock

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from safetensors.numpy import save

from gpu_workers.loras import _loaded, activate_loras
from gpu_workers.requests import GenerationFailed, LoraRef
from tests.lora_builders import (
    flux2_lora_bytes,
    flux_kohya_lora_bytes,
    flux_peft_lora_bytes,
    flux_xlabs_lora_bytes,
    kohya_lora_bytes,
    sd3_peft_lora_bytes,
)

pytestmark = pytest.mark.slow

FLUX_FORMATS = {
    "kohya": lambda seed: flux_kohya_lora_bytes(tiny=True, seed=seed),
    "kohya-no-text-encoder": lambda seed: flux_kohya_lora_bytes(
        tiny=True, seed=seed, text_encoder=False
    ),
    "comfyui": lambda seed: flux_kohya_lora_bytes(tiny=True, seed=seed, comfyui=True),
    "peft": lambda seed: flux_peft_lora_bytes(tiny=True, seed=seed),
    "xlabs": lambda seed: flux_xlabs_lora_bytes(tiny=True, seed=seed),
}
SD3_FORMATS = {
    "peft": lambda seed: sd3_peft_lora_bytes(tiny=True, seed=seed),
    "peft-text-encoders": lambda seed: sd3_peft_lora_bytes(
        tiny=True, seed=seed, text_encoders=True
    ),
}


@pytest.fixture
def config(cpu_config, tmp_path):
    return dataclasses.replace(cpu_config, lora_cache_dir=str(tmp_path / "lora-cache"))


@pytest.fixture
def flux(tiny_flux):
    return FluxPipeline.from_pretrained(tiny_flux, dtype=torch.float32)


@pytest.fixture
def sd3(tiny_sd3):
    return StableDiffusion3Pipeline.from_pretrained(tiny_sd3, dtype=torch.float32)


@pytest.fixture
def lora_file(tmp_path):
    def write(data, name, weight=1.0):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        return LoraRef(
            sha256=hashlib.sha256(data).hexdigest(), source=str(path), weight=weight, name=name
        )

    return write


def image(pipe):
    """The pipeline's own image: two steps at 32×32, a fixed seed."""
    pipe.set_progress_bar_config(disable=True)
    result = pipe(
        "a lighthouse at dusk",
        num_inference_steps=2,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    )
    assert np.isfinite(result.images).all()
    return result.images


@pytest.mark.parametrize("layout", FLUX_FORMATS)
def test_a_flux_lora_changes_the_image_and_leaves_no_trace(flux, config, lora_file, layout):
    lora = lora_file(FLUX_FORMATS[layout](1), f"flux-{layout}")
    base = image(flux)

    activate_loras(flux, (lora,), config)
    with_lora = image(flux)
    activate_loras(flux, (dataclasses.replace(lora, weight=0.0),), config)
    weight_zero = image(flux)
    activate_loras(flux, (), config)
    without = image(flux)

    assert not np.array_equal(with_lora, base)
    assert np.array_equal(weight_zero, base)
    assert np.array_equal(without, base)


@pytest.mark.parametrize("layout", SD3_FORMATS)
def test_an_sd3_lora_changes_the_image_and_leaves_no_trace(sd3, config, lora_file, layout):
    lora = lora_file(SD3_FORMATS[layout](1), f"sd3-{layout}")
    base = image(sd3)

    activate_loras(sd3, (lora,), config)
    with_lora = image(sd3)
    activate_loras(sd3, (dataclasses.replace(lora, weight=0.0),), config)
    weight_zero = image(sd3)
    activate_loras(sd3, (), config)
    without = image(sd3)

    assert not np.array_equal(with_lora, base)
    assert np.array_equal(weight_zero, base)
    assert np.array_equal(without, base)


def test_the_flux_kohya_text_encoder_layers_reach_clip(flux, config, lora_file):
    lora = lora_file(flux_kohya_lora_bytes(tiny=True, seed=3), "flux-kohya")
    activate_loras(flux, (lora,), config)

    adapters = flux.get_list_adapters()
    assert adapters["transformer"] == adapters["text_encoder"] == list(_loaded[flux])


@pytest.mark.parametrize(("family", "formats"), [("flux", FLUX_FORMATS), ("sd3", SD3_FORMATS)])
def test_stacked_loras_apply_each_with_its_weight(request, config, lora_file, family, formats):
    pipe = request.getfixturevalue(family)
    first = lora_file(formats["peft"](1), "first")
    second = lora_file(formats["peft"](2), "second", weight=0.5)

    activate_loras(pipe, (first,), config)
    first_alone = image(pipe)
    activate_loras(pipe, (second,), config)
    second_alone = image(pipe)
    activate_loras(pipe, (first, second), config)
    stacked = image(pipe)
    activate_loras(pipe, (first, dataclasses.replace(second, weight=1.0)), config)
    stacked_full = image(pipe)
    activate_loras(pipe, (first, second), config)

    assert not np.array_equal(stacked, first_alone)
    assert not np.array_equal(stacked, second_alone)
    assert not np.array_equal(stacked, stacked_full)
    assert np.array_equal(image(pipe), stacked)  # switched back without reloading
    assert len(_loaded[pipe]) == 2


@pytest.mark.parametrize(
    ("family", "formats", "pipeline_class"),
    [("flux", FLUX_FORMATS, FluxPipeline), ("sd3", SD3_FORMATS, StableDiffusion3Pipeline)],
)
def test_past_the_limit_a_lora_is_hotswapped_into_the_oldest_slot(
    request, config, lora_file, family, formats, pipeline_class
):
    pipe = request.getfixturevalue(family)
    one = dataclasses.replace(config, max_loaded_loras=1)
    first = lora_file(formats["peft"](1), "first")
    second = lora_file(formats["peft"](2), "second")
    activate_loras(pipe, (first,), one)
    slots = pipe.get_list_adapters()

    with mock.patch.object(pipe, "load_lora_weights", wraps=pipe.load_lora_weights) as load:
        activate_loras(pipe, (second,), one)
    swapped = image(pipe)

    assert [call.kwargs.get("hotswap") for call in load.call_args_list] == [True]
    assert pipe.get_list_adapters() == slots  # the same layers, new weights
    assert list(_loaded[pipe].values()) == [second.sha256]
    # Exactly the image of the same LoRA loaded afresh on another pipeline.
    fresh = pipeline_class.from_pretrained(
        request.getfixturevalue(f"tiny_{family}"), dtype=torch.float32
    )
    activate_loras(fresh, (second,), config)
    assert np.array_equal(swapped, image(fresh))


def test_a_flux_lora_on_an_sd3_model_is_refused_naming_both(sd3, config, lora_file):
    lora = lora_file(flux_peft_lora_bytes(tiny=True), "flux-style")
    with pytest.raises(GenerationFailed) as refused:
        activate_loras(sd3, (lora,), config)

    assert "made for FLUX.1 (FLUX.1's single-stream blocks)" in str(refused.value)
    assert "this Stable Diffusion 3.x model" in str(refused.value)
    assert sd3.get_list_adapters() == {}


def test_an_sd3_lora_on_a_flux_model_is_refused_naming_both(flux, config, lora_file):
    lora = lora_file(sd3_peft_lora_bytes(tiny=True, text_encoders=True), "sd3-style")
    with pytest.raises(GenerationFailed, match=r"made for Stable Diffusion 3\.x .*this FLUX\.1"):
        activate_loras(flux, (lora,), config)


def test_an_sdxl_lora_on_a_flux_model_is_refused_naming_both(flux, config, lora_file):
    lora = lora_file(kohya_lora_bytes("sdxl"), "sdxl-style")
    with pytest.raises(GenerationFailed, match=r"made for SDXL .*this FLUX\.1 model"):
        activate_loras(flux, (lora,), config)


def test_a_flux2_lora_on_a_flux_model_is_refused(flux, config, lora_file):
    lora = lora_file(flux2_lora_bytes(), "flux2-style")
    with pytest.raises(GenerationFailed, match=r"made for FLUX\.2 .*not for this FLUX\.1 model"):
        activate_loras(flux, (lora,), config)
    assert flux.get_list_adapters() == {}


def test_a_flux_lora_on_a_stable_diffusion_model_is_refused(tiny_sd15, config, lora_file):
    from gpu_workers.pipelines import load_pipeline

    pipe = load_pipeline(str(tiny_sd15), config)
    lora = lora_file(flux_kohya_lora_bytes(tiny=True), "flux-style")
    with pytest.raises(GenerationFailed, match=r"made for FLUX\.1 .*this Stable Diffusion"):
        activate_loras(pipe, (lora,), config)


def test_a_lora_with_no_layers_of_the_model_is_refused(flux, config, lora_file):
    # A UNet's self-attention at the tiny width: nothing tells the family, and diffusers'
    # FLUX.1 loader finds nothing to load.
    layer = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    data = save(
        {
            f"{layer}.lora_A.weight": np.ones((4, 32), np.float16),
            f"{layer}.lora_B.weight": np.ones((32, 4), np.float16),
        }
    )
    lora = lora_file(data, "unet-only")
    with pytest.raises(GenerationFailed, match="has no layers this FLUX.1 model has"):
        activate_loras(flux, (lora,), config)


def test_a_lora_with_text_encoder_layers_replaces_the_oldest_slot(
    flux, tiny_flux, config, lora_file
):
    # diffusers hotswaps no text encoder: the slot is unloaded and the LoRA loaded afresh.
    one = dataclasses.replace(config, max_loaded_loras=1)
    first = lora_file(flux_kohya_lora_bytes(tiny=True, seed=1), "first")
    second = lora_file(flux_kohya_lora_bytes(tiny=True, seed=2), "second")
    activate_loras(flux, (first,), one)
    with mock.patch.object(flux, "load_lora_weights", wraps=flux.load_lora_weights) as load:
        activate_loras(flux, (second,), one)
    swapped = image(flux)

    assert [call.kwargs.get("hotswap") for call in load.call_args_list] == [True, None]
    assert list(_loaded[flux].values()) == [second.sha256]
    assert [len(names) for names in flux.get_list_adapters().values()] == [1, 1]
    fresh = FluxPipeline.from_pretrained(tiny_flux, dtype=torch.float32)
    activate_loras(fresh, (second,), config)
    assert np.array_equal(swapped, image(fresh))
