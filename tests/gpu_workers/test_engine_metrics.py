"""The engine's Prometheus metrics: steps run, batch sizes, model cache hits and misses,
evictions, and the device's memory."""

import dataclasses
import shutil
from unittest import mock

import pytest
import torch
from prometheus_client import REGISTRY

from gpu_workers.metrics import gpu_memory_watch
from gpu_workers.pipelines import load_controlnet, load_pipeline, pipeline_bytes
from gpu_workers.tiny_models import build_tiny_controlnet

pytestmark = pytest.mark.usefixtures("empty_pipeline_cache")


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_steps_and_batch_size(make_engine, tiny_request):
    steps_before = value("studio_worker_denoise_steps_total", device="cpu")
    batches_before = value("studio_worker_batch_size_count", device="cpu")
    sizes_before = value("studio_worker_batch_size_sum", device="cpu")
    engine = make_engine(max_batch=4)
    requests = [dataclasses.replace(tiny_request, seed=seed) for seed in (1, 2, 3)]
    futures = [engine.submit(request) for request in requests]
    engine.start()
    for future in futures:
        future.result()

    # One step per image per step: the step rate counts images' steps, not UNet calls.
    assert value("studio_worker_denoise_steps_total", device="cpu") - steps_before == 3 * 4
    # One batch size per model call: 4 steps of 3 rows.
    assert value("studio_worker_batch_size_count", device="cpu") - batches_before == 4
    assert value("studio_worker_batch_size_sum", device="cpu") - sizes_before == 3 * 4


def test_model_cache_hits_misses_and_evictions(tiny_sd15, tmp_path, cpu_config):
    def lookups(kind, result):
        return value("studio_worker_model_cache_lookups_total", kind=kind, result=result)

    before = {
        (kind, result): lookups(kind, result)
        for kind in ("pipeline", "controlnet")
        for result in ("hit", "miss")
    }
    evictions_before = value("studio_worker_model_cache_evictions_total", device="cpu")
    a, b = (str(shutil.copytree(tiny_sd15, tmp_path / name)) for name in ("a", "b"))
    one_model = pipeline_bytes(load_pipeline(a, cpu_config))  # miss
    load_pipeline(a, cpu_config)  # hit
    load_pipeline(a, cpu_config, mode="img2img")  # hit: the same weights
    canny = str(build_tiny_controlnet(tmp_path / "canny"))
    load_controlnet(canny, cpu_config)  # miss
    load_controlnet(canny, cpu_config)  # hit
    # Room for one pipeline only: b evicts a.
    small = dataclasses.replace(cpu_config, model_cache_bytes=int(1.5 * one_model))
    load_pipeline(a, small)  # miss (another config)
    load_pipeline(b, small)  # miss, evicting

    def grew(kind, result):
        return lookups(kind, result) - before[kind, result]

    assert (grew("pipeline", "miss"), grew("pipeline", "hit")) == (3, 2)
    assert (grew("controlnet", "miss"), grew("controlnet", "hit")) == (1, 1)
    assert value("studio_worker_model_cache_evictions_total", device="cpu") > evictions_before


def test_gpu_memory_is_read_at_each_scrape():
    device = torch.device("cuda:3")
    with (
        mock.patch("torch.cuda.memory_allocated", return_value=1000) as allocated,
        mock.patch("torch.cuda.memory_reserved", return_value=4096),
    ):
        gpu_memory_watch(device)
        assert value("studio_worker_gpu_memory_bytes", device="cuda:3", kind="allocated") == 1000
        assert value("studio_worker_gpu_memory_bytes", device="cuda:3", kind="reserved") == 4096
        allocated.return_value = 2000
        assert value("studio_worker_gpu_memory_bytes", device="cuda:3", kind="allocated") == 2000
    allocated.assert_called_with(device)


def test_cpu_engines_report_no_gpu_memory(make_engine):
    make_engine()
    assert REGISTRY.get_sample_value(
        "studio_worker_gpu_memory_bytes", {"device": "cpu", "kind": "allocated"}
    ) is None
