"""The model cache: an LRU bounded by bytes of parameters, modes sharing one set of weights,
and the WorkerConfig options applied when a pipeline loads."""

import dataclasses
import shutil

import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from gpu_workers.pipelines import (
    load_controlnet,
    load_ip_adapter,
    load_pipeline,
    loaded_sources,
    module_bytes,
    pipeline_bytes,
    tensor_bytes,
)
from gpu_workers.tiny_models import build_tiny_controlnet, build_tiny_ip_adapter

pytestmark = pytest.mark.usefixtures("empty_pipeline_cache")


@pytest.fixture
def three_models(tiny_sd15, tmp_path):
    return [str(shutil.copytree(tiny_sd15, tmp_path / name)) for name in ("a", "b", "c")]


def test_pipeline_bytes_counts_every_parameter_and_buffer(tiny_sd15, cpu_config):
    pipe = load_pipeline(str(tiny_sd15), cpu_config)
    models = (pipe.unet, pipe.vae, pipe.text_encoder)

    expected = sum(
        tensor.numel() * tensor.element_size()
        for model in models
        for tensor in (*model.parameters(), *model.buffers())
    )
    assert pipeline_bytes(pipe) == expected > 0


def test_least_recently_used_model_is_evicted_when_the_budget_is_full(
    three_models, cpu_config
):
    a, b, c = three_models
    one_model = pipeline_bytes(load_pipeline(a, cpu_config))
    config = dataclasses.replace(cpu_config, model_cache_bytes=int(2.5 * one_model))

    first_a = load_pipeline(a, config)
    load_pipeline(b, config)
    assert loaded_sources(config) == [a, b]
    load_pipeline(a, config)  # a is now the most recently used
    load_pipeline(c, config)

    assert loaded_sources(config) == [a, c]  # b went
    assert load_pipeline(a, config) is first_a


def test_the_budget_counts_every_config_on_the_device(three_models, cpu_config):
    a, b, _ = three_models
    one_model = pipeline_bytes(load_pipeline(a, cpu_config))
    small = dataclasses.replace(cpu_config, model_cache_bytes=one_model)

    load_pipeline(b, small)

    assert loaded_sources(small) == [b]
    assert loaded_sources() == [b]  # a, loaded with another config on the same device, went


def test_a_model_larger_than_the_budget_still_loads_alone(three_models, cpu_config):
    a, b, _ = three_models
    tiny_budget = dataclasses.replace(cpu_config, model_cache_bytes=1)

    load_pipeline(a, tiny_budget)
    load_pipeline(b, tiny_budget)

    assert loaded_sources(tiny_budget) == [b]


def test_controlnets_share_the_budget_and_the_lru_with_pipelines(
    three_models, cpu_config, tmp_path
):
    a, b, _ = three_models
    canny = str(build_tiny_controlnet(tmp_path / "canny"))
    one_model = pipeline_bytes(load_pipeline(a, cpu_config))
    controlnet_bytes = module_bytes([load_controlnet(canny, cpu_config)])
    # Room for two pipelines, or one and the ControlNet, not all three.
    config = dataclasses.replace(
        cpu_config, model_cache_bytes=2 * one_model + controlnet_bytes // 2
    )

    load_pipeline(a, config)
    first = load_controlnet(canny, config)
    assert loaded_sources(config) == [a, canny]
    assert load_controlnet(canny, config) is first  # kept, and now the most recently used
    load_pipeline(b, config)  # no room for all three: a, least recently used, goes

    assert loaded_sources(config) == [canny, b]
    load_pipeline(a, config)  # and now the ControlNet, least recently used, goes
    assert loaded_sources(config) == [b, a]


def test_ip_adapters_count_in_the_budget_too(three_models, cpu_config, tmp_path):
    a, b, _ = three_models
    adapter_dir = str(build_tiny_ip_adapter(tmp_path / "ip-adapter"))
    one_model = pipeline_bytes(load_pipeline(a, cpu_config))
    adapter = load_ip_adapter(adapter_dir, cpu_config)
    adapter_bytes = tensor_bytes(adapter.tensors())
    assert adapter_bytes > 0
    config = dataclasses.replace(
        cpu_config, model_cache_bytes=2 * one_model + adapter_bytes // 2
    )

    load_pipeline(a, config)
    assert load_ip_adapter(adapter_dir, config) is load_ip_adapter(adapter_dir, config)
    load_pipeline(b, config)

    assert loaded_sources(config) == [adapter_dir, b]


def test_modes_share_the_weights_of_one_entry(tiny_sd15, cpu_config):
    txt2img = load_pipeline(str(tiny_sd15), cpu_config)

    img2img = load_pipeline(str(tiny_sd15), cpu_config, mode="img2img")

    assert isinstance(img2img, StableDiffusionImg2ImgPipeline)
    assert img2img.unet is txt2img.unet and img2img.vae is txt2img.vae
    assert load_pipeline(str(tiny_sd15), cpu_config, mode="img2img") is img2img
    assert loaded_sources() == [str(tiny_sd15)]


def test_default_options_sdpa_and_vae_slicing(tiny_sd15, cpu_config):
    pipe = load_pipeline(str(tiny_sd15), cpu_config)

    processors = {**pipe.unet.attn_processors, **pipe.vae.attn_processors}
    assert all(isinstance(processor, AttnProcessor2_0) for processor in processors.values())
    assert pipe.vae.use_slicing and not pipe.vae.use_tiling
    assert pipe.unet._compiled_call_impl is None


def test_every_option_is_applied_when_a_pipeline_loads(tiny_sd15, cpu_config):
    config = dataclasses.replace(
        cpu_config,
        attention="eager",
        channels_last=True,
        compile=True,
        vae_slicing=False,
        vae_tiling=True,
    )

    pipe = load_pipeline(str(tiny_sd15), config)

    processors = {**pipe.unet.attn_processors, **pipe.vae.attn_processors}
    assert all(type(processor) is AttnProcessor for processor in processors.values())
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert pipe.unet._compiled_call_impl is not None  # compiled on its first call
    assert pipe.unet._prepare_lora_hotswap_kwargs["target_rank"] == config.max_lora_rank
    assert pipe.vae.use_tiling and not pipe.vae.use_slicing
    assert pipe.device.type == "cpu" and pipe.unet.dtype == config.dtype
