"""The model cache with CPU offload: a pipeline's weights count in host memory, within their
own budget, and on the GPU only for what the offload keeps there at once.

Offload itself needs CUDA, so here the pipelines load as they would without it (the
options that move them are skipped) and the tests check the cache's accounting and
eviction, with budgets small enough for the tiny models.
"""

import dataclasses
import os
import shutil

import pytest
import torch

from gpu_workers import pipelines
from gpu_workers.config import WorkerConfig
from gpu_workers.pipelines import (
    host_cache_budget_bytes,
    load_controlnet,
    load_pipeline,
    loaded_sources,
    module_bytes,
    pipeline_bytes,
    pipeline_cache_bytes,
)
from gpu_workers.tiny_models import build_tiny_controlnet

pytestmark = pytest.mark.usefixtures("empty_pipeline_cache")


@pytest.fixture(autouse=True)
def no_device_moves(monkeypatch):
    """enable_*_cpu_offload needs a GPU; the accounting under test happens before it."""
    monkeypatch.setattr(pipelines, "_apply_options", lambda pipe, config: None)


@pytest.fixture
def three_models(tiny_sd15, tmp_path):
    return [str(shutil.copytree(tiny_sd15, tmp_path / name)) for name in ("a", "b", "c")]


def offloading(config: WorkerConfig, mode: str = "model", **budgets) -> WorkerConfig:
    return dataclasses.replace(config, cpu_offload=mode, **budgets)


def models_of(pipe) -> list[torch.nn.Module]:
    return [model for model in pipe.components.values() if isinstance(model, torch.nn.Module)]


def test_without_offload_every_weight_counts_on_the_device(tiny_sd15, cpu_config):
    pipe = load_pipeline(str(tiny_sd15), cpu_config)

    assert pipeline_cache_bytes(pipe, cpu_config) == (pipeline_bytes(pipe), 0)
    assert host_cache_budget_bytes(cpu_config) is None


def test_model_offload_counts_the_largest_model_on_the_device_and_all_in_host_memory(
    tiny_sd15, cpu_config
):
    pipe = load_pipeline(str(tiny_sd15), cpu_config)
    largest = max(module_bytes([model]) for model in models_of(pipe))

    assert largest == module_bytes([pipe.unet]) < pipeline_bytes(pipe)
    assert pipeline_cache_bytes(pipe, offloading(cpu_config)) == (largest, pipeline_bytes(pipe))


def test_sequential_offload_counts_the_largest_layer_and_the_buffers_on_the_device(
    tiny_sd15, cpu_config
):
    pipe = load_pipeline(str(tiny_sd15), cpu_config)
    largest_layer = max(
        sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
        for model in models_of(pipe)
        for module in model.modules()
    )
    buffers = sum(
        b.numel() * b.element_size() for model in models_of(pipe) for b in model.buffers()
    )

    device_bytes, host_bytes = pipeline_cache_bytes(pipe, offloading(cpu_config, "sequential"))

    assert (device_bytes, host_bytes) == (largest_layer + buffers, pipeline_bytes(pipe))
    assert device_bytes < module_bytes([pipe.unet])


def test_with_offload_models_too_large_together_for_the_gpu_stay_when_their_largest_fit(
    three_models, cpu_config
):
    a, b, _ = three_models
    pipe = load_pipeline(a, cpu_config)
    whole, largest = pipeline_bytes(pipe), module_bytes([pipe.unet])
    # Two largest models fit the GPU budget; two whole pipelines do not.
    gpu_budget = whole + largest
    offload = offloading(cpu_config, model_cache_bytes=gpu_budget, model_cache_host_bytes=4 * whole)

    load_pipeline(a, offload)
    load_pipeline(b, offload)

    assert loaded_sources(offload) == [a, b]
    # Without offload the same budget holds one of them: unchanged.
    no_offload = dataclasses.replace(cpu_config, model_cache_bytes=gpu_budget)
    load_pipeline(a, no_offload)
    assert loaded_sources(no_offload) == [a]


def test_the_host_budget_evicts_the_least_recently_used_offloaded_model(three_models, cpu_config):
    a, b, c = three_models
    whole = pipeline_bytes(load_pipeline(a, cpu_config))
    offload = offloading(
        cpu_config, model_cache_bytes=100 * whole, model_cache_host_bytes=int(2.5 * whole)
    )

    first_a = load_pipeline(a, offload)
    load_pipeline(b, offload)
    load_pipeline(a, offload)  # a is now the most recently used
    load_pipeline(c, offload)

    assert loaded_sources(offload) == [a, c]  # b went
    assert load_pipeline(a, offload) is first_a


def test_the_host_budget_counts_only_offloaded_weights(tmp_path, three_models, cpu_config):
    """A ControlNet goes to the device whole, offload or not: the device budget counts it,
    the host budget does not."""
    a, b, _ = three_models
    whole = pipeline_bytes(load_pipeline(a, cpu_config))
    controlnet = build_tiny_controlnet(tmp_path / "controlnet")
    offload = offloading(
        cpu_config, model_cache_bytes=100 * whole, model_cache_host_bytes=int(1.5 * whole)
    )

    load_controlnet(str(controlnet), offload)
    load_pipeline(a, offload)
    assert loaded_sources(offload) == [str(controlnet), a]

    load_pipeline(b, offload)
    assert loaded_sources(offload) == [str(controlnet), b]  # a went, not the ControlNet


def test_the_host_budget_defaults_to_half_the_machines_memory(cpu_config):
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    assert host_cache_budget_bytes(offloading(cpu_config)) == physical // 2
    assert host_cache_budget_bytes(offloading(cpu_config, model_cache_host_bytes=123)) == 123


@pytest.fixture
def cuda_env(monkeypatch):
    """STUDIO_CPU_OFFLOAD needs STUDIO_DEVICE=cuda, which from_env checks torch for."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("STUDIO_DEVICE", "cuda")
    monkeypatch.setenv("STUDIO_DTYPE", "fp16")
    for name in ("STUDIO_CPU_OFFLOAD", "STUDIO_MODEL_CACHE_BYTES", "STUDIO_COMPILE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_host_budget_is_read_from_the_environment(cuda_env):
    cuda_env.setenv("STUDIO_CPU_OFFLOAD", "sequential")
    cuda_env.setenv("STUDIO_MODEL_CACHE_HOST_BYTES", "32000000000")

    config = WorkerConfig.from_env()

    assert (config.cpu_offload, config.model_cache_host_bytes) == ("sequential", 32_000_000_000)


def test_the_host_budget_defaults_to_none(cuda_env):
    cuda_env.setenv("STUDIO_CPU_OFFLOAD", "model")
    cuda_env.delenv("STUDIO_MODEL_CACHE_HOST_BYTES", raising=False)

    assert WorkerConfig.from_env().model_cache_host_bytes is None


@pytest.mark.parametrize("value", ["0", "-5", "32GB", "1.5e9"])
def test_a_host_budget_that_is_not_a_positive_byte_count_is_refused(cuda_env, value):
    cuda_env.setenv("STUDIO_CPU_OFFLOAD", "model")
    cuda_env.setenv("STUDIO_MODEL_CACHE_HOST_BYTES", value)

    with pytest.raises(ValueError, match="STUDIO_MODEL_CACHE_HOST_BYTES=.*positive number"):
        WorkerConfig.from_env()


def test_a_host_budget_without_offload_is_refused(cuda_env):
    cuda_env.setenv("STUDIO_MODEL_CACHE_HOST_BYTES", "32000000000")

    with pytest.raises(ValueError, match="needs STUDIO_CPU_OFFLOAD=model or sequential"):
        WorkerConfig.from_env()
