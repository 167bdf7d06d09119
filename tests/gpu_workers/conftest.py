from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from gpu_workers import pipelines
from gpu_workers.config import WorkerConfig
from gpu_workers.engine import Engine
from gpu_workers.requests import GenerationRequest


@pytest.fixture(scope="session")
def tiny_sd15(tiny_model_dir) -> Path:
    """The tiny SD1.5-architecture folder shared by the whole test run."""
    return tiny_model_dir


@pytest.fixture(scope="session")
def cpu_config() -> WorkerConfig:
    return WorkerConfig(device="cpu", dtype=torch.float32)


@pytest.fixture
def tiny_request(tiny_sd15):
    return GenerationRequest(
        model_source=str(tiny_sd15),
        prompt="a cat on the mat",
        negative_prompt="blurry",
        steps=4,
        guidance_scale=7.0,
        width=64,
        height=64,
        seed=1234,
    )


@pytest.fixture
def empty_pipeline_cache(monkeypatch):
    """A fresh cache for this test only, served by no engine yet; the session's loaded
    pipelines come back after."""
    monkeypatch.setattr(pipelines, "_cache", OrderedDict())
    monkeypatch.setattr(pipelines, "_serving", {})


@pytest.fixture(scope="session")
def plain_pipeline(tiny_sd15):
    """The tiny model as plain diffusers loads it, outside the worker's cache and engine."""
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_sd15, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def make_engine(cpu_config, engines):
    """Engine(cpu_config, **options); not started, so that requests submitted before
    `start()` are all queued when the loop forms its first batch. Shut down after the test."""
    return lambda **options: engines(cpu_config, **options)


@pytest.fixture
def engines():
    """Engine(config, **options) for any config; not started. Shut down after the test."""
    made = []

    def make(config, **options):
        engine = Engine(config, **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.shutdown()


@pytest.fixture(params=["flux", "sd3"])
def family(request):
    """A flow family: a test that asks for it runs for FLUX.1 and for SD 3.x."""
    return request.param


@pytest.fixture
def flow_model_dir(family, tiny_flux, tiny_sd3):
    """The tiny model of `family`."""
    return {"flux": tiny_flux, "sd3": tiny_sd3}[family]


@pytest.fixture
def flow_request(family, flow_model_dir):
    """A small txt2img request for the tiny model of `family`; tests replace what they vary."""
    return GenerationRequest(
        model_source=str(flow_model_dir),
        prompt="a cat on the mat",
        negative_prompt="blurry",
        steps=4,
        guidance_scale=3.5 if family == "flux" else 5.0,
        width=64,
        height=48,
        seed=1234,
    )
