"""LoRAs on FLUX.1 and SD 3.x through the engine (issue #17), on the tiny models, on the
CPU in fp32: a request with a LoRA gets another image than the base model's, rows sharing a
LoRA in a batch get their images alone, and requests without one, queued beside and after
it, get the plain pipeline's image bitwise (the adapter is off for their batch)."""

import dataclasses
import hashlib

import numpy as np
import pytest

from gpu_workers.engine import Engine
from gpu_workers.requests import LoraRef
from tests.gpu_workers.engine_runs import flow_txt2img_pixels, pixels
from tests.lora_builders import flux_peft_lora_bytes, sd3_peft_lora_bytes

LORAS = {"flux": flux_peft_lora_bytes, "sd3": sd3_peft_lora_bytes}


@pytest.fixture
def make_lora_engine(cpu_config, tmp_path):
    config = dataclasses.replace(cpu_config, lora_cache_dir=str(tmp_path / "lora-cache"))
    engines = []

    def make(**options):
        engines.append(Engine(config, **options))
        return engines[-1]

    yield make
    for engine in engines:
        engine.shutdown()


@pytest.fixture
def lora(family, tmp_path):
    data = LORAS[family](tiny=True, seed=1)
    path = tmp_path / f"{family}-lora.safetensors"
    path.write_bytes(data)
    return LoraRef(sha256=hashlib.sha256(data).hexdigest(), source=str(path), name="style")


@pytest.fixture
def base_request(flow_request):
    return dataclasses.replace(flow_request, prompt="a lighthouse at dusk", steps=3, seed=7)


def test_a_lora_changes_the_image_and_a_batch_without_it_is_the_base_image(
    make_lora_engine, family, flow_model_dir, base_request, lora
):
    styled = dataclasses.replace(base_request, loras=(lora,))
    requests = [
        styled,
        dataclasses.replace(styled, seed=8),
        base_request,
        dataclasses.replace(base_request, seed=8),
    ]
    engine = make_lora_engine(max_batch=4)
    futures = [engine.submit(request) for request in requests]
    engine.start()
    made = [pixels(future.result()) for future in futures]
    after = engine.submit(base_request)  # the LoRA stays loaded, off
    after_pixels = pixels(after.result())

    base = flow_txt2img_pixels(family, flow_model_dir, base_request)
    assert not np.array_equal(made[0], base)
    assert np.array_equal(made[2], base)
    assert np.array_equal(after_pixels, base)
    assert np.array_equal(made[3], flow_txt2img_pixels(family, flow_model_dir, requests[3]))
    # The two rows with the LoRA shared their batch, each its image alone.
    assert futures[0].result().batch_size == 2
    alone = make_lora_engine()
    second = alone.submit(requests[1])
    alone.start()
    assert np.array_equal(made[1], pixels(second.result()))
