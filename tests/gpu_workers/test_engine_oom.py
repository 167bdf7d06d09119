"""Out of memory: the batch is split in halves and retried; a lone request then fails clearly."""

import dataclasses

import numpy as np
import pytest
import torch

from gpu_workers.engine import Engine
from gpu_workers.pipelines import load_pipeline
from gpu_workers.requests import GenerationFailed


@pytest.fixture
def memory_limit(monkeypatch, tiny_request, cpu_config):
    """memory_limit(component, rows, config): that component ("unet" or "vae") of the
    pipeline loaded with `config` (default: the CPU's) raises out-of-memory for inputs of
    more than `rows` rows, as CUDA would."""

    def limit(component, rows, config=cpu_config):
        pipe = load_pipeline(tiny_request.model_source, config)
        method = "forward" if component == "unet" else "decode"
        real = getattr(getattr(pipe, component), method)

        def limited(sample, *args, **kwargs):
            if sample.shape[0] > rows:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return real(sample, *args, **kwargs)

        monkeypatch.setattr(getattr(pipe, component), method, limited)

    return limit


@pytest.mark.parametrize(
    ("component", "rows", "batch_sizes"),
    [
        ("unet", 4, [2, 2, 2, 2]),  # two CFG requests fit, four do not: fails at step 1
        # Decoding 4 images per VAE call (a GPU's chunks), 2 do not fit: fails after every
        # step was reported, twice.
        ("vae", 1, [1, 1, 1, 1]),
    ],
)
def test_a_batch_that_runs_out_of_memory_is_split_until_it_fits(
    make_engine, tiny_request, memory_limit, cpu_config, component, rows, batch_sizes
):
    requests = [dataclasses.replace(tiny_request, seed=seed) for seed in range(4)]
    alone = make_engine(max_batch=1, max_wait_ms=0)
    expected = [alone.submit(request) for request in requests]
    alone.start()
    expected_pixels = [np.asarray(future.result().images[0]) for future in expected]
    config = cpu_config
    if component == "vae":
        config = dataclasses.replace(cpu_config, vae_decode_chunk=4, vae_slicing=False)
    memory_limit(component, rows, config)
    steps = [[] for _ in requests]
    engine = Engine(config, max_wait_ms=0)
    futures = [
        engine.submit(request, on_step=lambda *step, log=log: log.append(step))
        for request, log in zip(requests, steps, strict=True)
    ]
    with engine:
        results = [future.result() for future in futures]
    assert [result.batch_size for result in results] == batch_sizes
    for result, pixels in zip(results, expected_pixels, strict=True):
        assert np.array_equal(np.asarray(result.images[0]), pixels)
    # Each step reported once: a retried batch does not send progress back to 1.
    assert steps == [[(1, 4), (2, 4), (3, 4), (4, 4)]] * 4


def test_a_request_out_of_memory_alone_fails_with_size_steps_and_advice(
    make_engine, tiny_request, memory_limit
):
    memory_limit("unet", 0)
    requests = [dataclasses.replace(tiny_request, seed=seed) for seed in range(3)]
    engine = make_engine(max_wait_ms=0)
    futures = [engine.submit(request) for request in requests]
    engine.start()

    for future in futures:
        with pytest.raises(GenerationFailed) as failure:
            future.result()
        message = str(failure.value)
        assert "Out of memory on cpu making one 64x64 image in 4 steps" in message
        assert "smaller size" in message and "STUDIO_VAE_TILING=1" in message
