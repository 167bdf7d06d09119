"""The model cache's gauges: bytes of weights on each device and, with CPU offload, in host
memory, beside their budgets, and the models cached, read from the cache at each scrape.

Offload needs CUDA, so its tests load the pipelines as they would without it (as
test_model_cache_offload does) and check the cache's accounting as the gauges report it.
"""

import dataclasses
import shutil
import threading
from unittest import mock

import pytest
import torch
from prometheus_client import REGISTRY

from gpu_workers import pipelines
from gpu_workers.engine import Engine
from gpu_workers.pipelines import (
    _Entry,
    load_controlnet,
    load_pipeline,
    module_bytes,
    pipeline_bytes,
)
from gpu_workers.tiny_models import build_tiny_controlnet

pytestmark = pytest.mark.usefixtures("empty_pipeline_cache")


def cache_bytes(device, memory):
    return REGISTRY.get_sample_value(
        "studio_worker_model_cache_bytes", {"device": device, "memory": memory}
    )


def budget(device, memory):
    return REGISTRY.get_sample_value(
        "studio_worker_model_cache_budget_bytes", {"device": device, "memory": memory}
    )


def models(device):
    return {
        kind: REGISTRY.get_sample_value(
            "studio_worker_model_cache_models", {"device": device, "kind": kind}
        )
        for kind in ("pipeline", "controlnet", "ip_adapter")
    }


@pytest.fixture
def two_models(tiny_sd15, tmp_path):
    return [str(shutil.copytree(tiny_sd15, tmp_path / name)) for name in ("a", "b")]


def offloading(config, **budgets):
    return dataclasses.replace(config, cpu_offload="model", **budgets)


@pytest.fixture
def no_device_moves(monkeypatch):
    """enable_model_cpu_offload needs a GPU; the accounting under test happens before it."""
    monkeypatch.setattr(pipelines, "_apply_options", lambda pipe, config: None)


def test_an_empty_cache_reports_no_device(cpu_config):
    assert cache_bytes("cpu", "device") is None
    assert models("cpu") == {"pipeline": None, "controlnet": None, "ip_adapter": None}


def test_an_engines_device_reports_its_budget_before_any_model_loads(cpu_config):
    config = dataclasses.replace(cpu_config, model_cache_bytes=10**9)
    Engine(config)

    assert (cache_bytes("cpu", "device"), budget("cpu", "device")) == (0, 10**9)
    assert models("cpu") == {"pipeline": 0, "controlnet": 0, "ip_adapter": 0}


def test_loaded_models_count_on_their_device_within_its_budget(tiny_sd15, tmp_path, cpu_config):
    config = dataclasses.replace(cpu_config, model_cache_bytes=10**9)
    pipe = load_pipeline(str(tiny_sd15), config)
    load_pipeline(str(tiny_sd15), config, mode="img2img")  # the same weights: one model
    controlnet = load_controlnet(str(build_tiny_controlnet(tmp_path / "canny")), config)

    assert cache_bytes("cpu", "device") == pipeline_bytes(pipe) + module_bytes([controlnet])
    assert budget("cpu", "device") == 10**9
    assert models("cpu") == {"pipeline": 1, "controlnet": 1, "ip_adapter": 0}
    # Without offload no weights are counted in host memory, and there is no host budget.
    assert cache_bytes("cpu", "host") is None
    assert budget("cpu", "host") is None


def test_a_device_without_a_limit_reports_no_budget(tiny_sd15, cpu_config):
    load_pipeline(str(tiny_sd15), cpu_config)  # a CPU's cache has no limit by default

    assert cache_bytes("cpu", "device") > 0
    assert budget("cpu", "device") is None


def test_an_eviction_leaves_the_gauges_at_what_stays(two_models, cpu_config):
    a, b = two_models
    one_model = pipeline_bytes(load_pipeline(a, cpu_config))
    small = dataclasses.replace(cpu_config, model_cache_bytes=int(1.5 * one_model))

    load_pipeline(a, small)
    load_pipeline(b, small)  # evicts a: both configs' entries are on one device

    assert pipelines.loaded_sources() == [b]
    assert cache_bytes("cpu", "device") == one_model
    assert budget("cpu", "device") == int(1.5 * one_model)
    assert models("cpu")["pipeline"] == 1


@pytest.mark.usefixtures("no_device_moves")
def test_offloaded_weights_count_in_host_memory_within_its_budget(two_models, cpu_config):
    a, b = two_models
    pipe = load_pipeline(a, cpu_config)
    whole, largest = pipeline_bytes(pipe), module_bytes([pipe.unet])
    offload = offloading(
        cpu_config, model_cache_bytes=100 * whole, model_cache_host_bytes=int(2.5 * whole)
    )
    pipelines._cache.clear()  # the offloading config's models only

    load_pipeline(a, offload)
    load_pipeline(b, offload)

    # On the device, what the offload keeps there at once: each pipeline's largest model.
    assert cache_bytes("cpu", "device") == 2 * largest
    assert budget("cpu", "device") == 100 * whole
    assert cache_bytes("cpu", "host") == 2 * whole
    assert budget("cpu", "host") == int(2.5 * whole)
    assert models("cpu")["pipeline"] == 2


@pytest.mark.usefixtures("no_device_moves")
def test_a_host_memory_eviction_leaves_the_gauges_at_what_stays(two_models, cpu_config):
    a, b = two_models
    whole = pipeline_bytes(load_pipeline(a, cpu_config))
    offload = offloading(
        cpu_config, model_cache_bytes=100 * whole, model_cache_host_bytes=int(1.5 * whole)
    )
    pipelines._cache.clear()

    load_pipeline(a, offload)
    load_pipeline(b, offload)  # evicts a from host memory

    assert pipelines.loaded_sources() == [b]
    assert cache_bytes("cpu", "host") == whole
    assert models("cpu")["pipeline"] == 1


def test_an_offloading_device_with_only_a_controlnet_reports_no_host_bytes(tmp_path, cpu_config):
    """A ControlNet goes to the device whole, offload or not."""
    offload = offloading(cpu_config, model_cache_host_bytes=10**9)
    controlnet = load_controlnet(str(build_tiny_controlnet(tmp_path / "canny")), offload)

    assert cache_bytes("cpu", "device") == module_bytes([controlnet])
    assert cache_bytes("cpu", "host") == 0
    assert budget("cpu", "host") == 10**9


def test_each_device_reports_its_own_models_and_default_budget(cpu_config, monkeypatch):
    """Entries of two GPUs, as the loaders leave them; a GPU's budget defaults to 3/4 of it."""
    gpu0, gpu1 = (dataclasses.replace(cpu_config, device=f"cuda:{i}") for i in (0, 1))
    cache = pipelines._cache
    cache["a", gpu0] = _Entry(device_bytes=300, pipelines={"txt2img": object()})
    cache["canny", gpu0] = _Entry(device_bytes=20, controlnet=object())
    cache["b", gpu1] = _Entry(device_bytes=500, pipelines={"txt2img": object()})
    properties = {0: mock.Mock(total_memory=8000), 1: mock.Mock(total_memory=24000)}
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device: properties[device.index]
    )

    assert (cache_bytes("cuda:0", "device"), cache_bytes("cuda:1", "device")) == (320, 500)
    assert (budget("cuda:0", "device"), budget("cuda:1", "device")) == (6000, 18000)
    assert models("cuda:0") == {"pipeline": 1, "controlnet": 1, "ip_adapter": 0}
    assert models("cuda:1") == {"pipeline": 1, "controlnet": 0, "ip_adapter": 0}


def test_a_scrape_does_not_wait_for_a_model_to_load(tiny_sd15, cpu_config):
    load_pipeline(str(tiny_sd15), cpu_config)
    scraped = []
    scrape = threading.Thread(target=lambda: scraped.append(cache_bytes("cpu", "device")))

    with pipelines._cache_lock:  # held while a model loads, for as long as that takes
        scrape.start()
        scrape.join(timeout=10)

    assert not scrape.is_alive()
    assert scraped[0] > 0
