"""Batch buckets for FLUX.1 and SD 3.x (issue #16): a FlowBatch's transformer calls padded to
fixed batch sizes (or split into calls of the largest), the buckets warmed up at preload,
and a compiled transformer that never recompiles as rows join and leave.

A padded call computes each real row as that row alone (gpu_workers.batch_invariance), so
on the CPU every image stays bitwise the request's alone; SD 3.x's CFG rows (two per
request) and FLUX.1's guidance and ids go into the padding like any row's.
"""

import dataclasses

import numpy as np
import pytest
import torch

from gpu_workers.metrics import WARMUP_SECONDS
from gpu_workers.pipelines import load_pipeline
from tests.gpu_workers.engine_runs import batch_sizes_seen, pixels, run_batch


@pytest.fixture
def bucket_pipe(monkeypatch):
    """load_pipeline(source, config), its default size that of the tiny models' requests,
    64 px, where the warm-up runs: FluxPipeline's is 1024 px whatever the model."""

    def load(source, config):
        pipe = load_pipeline(source, config)
        monkeypatch.setattr(pipe, "default_sample_size", 64 // pipe.vae_scale_factor)
        return pipe

    return load


@pytest.fixture
def joining_and_leaving(flow_request):
    """Three requests of 64 px that leave their batch one after another: SD 3.x's middle
    one without CFG; FLUX.1's with another distilled guidance."""
    request = dataclasses.replace(flow_request, height=64)
    return [
        dataclasses.replace(request, steps=3),
        dataclasses.replace(request, prompt="the mat", guidance_scale=1.0, seed=7, steps=2),
        dataclasses.replace(request, seed=8, steps=4),
    ]


@pytest.mark.parametrize("buckets", [(1, 2, 4, 8), (2,)])
def test_padded_transformer_calls_give_each_row_its_image_alone(
    engines, cpu_config, family, joining_and_leaving, buckets
):
    """FLUX.1: 3 rows, then 2, then 1; SD 3.x: 5, 4, 2. Bucket (2,) splits them into calls
    of 2, the last one padded."""
    requests = joining_and_leaving
    alone = [run_batch(engines(cpu_config), [request])[0] for request in requests]
    config = dataclasses.replace(cpu_config, batch_buckets=buckets)
    pipe = load_pipeline(requests[0].model_source, config)

    with batch_sizes_seen(pipe.transformer) as sizes:
        padded = run_batch(engines(config), requests)

    assert set(sizes) <= set(buckets)
    assert [result.batch_size for result in padded] != [1, 1, 1]  # they did share calls
    for n, (padded_result, alone_result) in enumerate(zip(padded, alone, strict=True)):
        assert np.array_equal(pixels(padded_result), pixels(alone_result)), n


def test_warm_up_runs_every_bucket_up_to_the_largest_batch_once(
    engines, cpu_config, family, flow_request, bucket_pipe
):
    config = dataclasses.replace(cpu_config, batch_buckets=(1, 2, 4, 8, 16), vae_slicing=False)
    engine = engines(config, max_batch=3)  # FLUX.1: 3 rows, bucket 4; SD 3.x: 6, bucket 8
    pipe = bucket_pipe(flow_request.model_source, config)

    with (
        batch_sizes_seen(pipe.transformer) as transformer_sizes,
        batch_sizes_seen(pipe.vae.decoder) as vae_sizes,
    ):
        seconds = engine.preload([flow_request.model_source])
        again = engine.preload([flow_request.model_source])

    assert transformer_sizes == {"flux": [1, 2, 4], "sd3": [1, 2, 4, 8]}[family]
    assert vae_sizes == [1]  # a FlowBatch decodes an image per VAE call
    assert seconds[flow_request.model_source] > 0
    assert WARMUP_SECONDS.labels(device="cpu")._value.get() == seconds[flow_request.model_source]
    assert again == {flow_request.model_source: 0.0}  # once per loaded model


def test_compiled_flow_models_warmed_up_never_recompile_as_rows_join_and_leave(
    engines, cpu_config, family, joining_and_leaving, bucket_pipe
):
    """torch.compile on the CPU (a minute or two: the warm-up compiles the transformer and
    the VAE decoder): after the warm-up, one request alone, then three that join together
    and leave one by one, run without a single recompile."""
    requests = joining_and_leaving
    buckets = {"flux": (1, 2, 4), "sd3": (1, 2, 4, 8)}[family]
    config = dataclasses.replace(
        cpu_config, compile=True, compile_mode="default", batch_buckets=buckets
    )
    bucket_pipe(requests[0].model_source, config)
    engine = engines(config, max_batch=3).start()
    seconds = engine.preload([requests[0].model_source])[requests[0].model_source]

    with torch._dynamo.config.patch(error_on_recompile=True):
        alone = engine.submit(requests[1]).result()
        together = [engine.submit(request) for request in requests]
        results = [future.result() for future in together]

    assert seconds > 0
    assert alone.batch_size == 1
    # Together (FLUX.1: 3 transformer rows, padded to 4; SD 3.x: 5, padded to 8), then fewer
    # as each leaves.
    assert max(result.batch_size for result in results) >= 2
