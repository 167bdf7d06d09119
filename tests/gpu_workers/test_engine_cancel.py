"""Cancel, failing callbacks and the time limit stay per request inside a batch."""

import dataclasses

import numpy as np
import pytest

from gpu_workers.pipelines import load_pipeline
from gpu_workers.requests import GenerationCanceled, GenerationFailed


@pytest.fixture
def batch(tiny_request):
    return [dataclasses.replace(tiny_request, steps=6, seed=seed) for seed in (1, 2, 3)]


@pytest.fixture
def unet_calls(tiny_request, cpu_config):
    unet = load_pipeline(tiny_request.model_source, cpu_config).unet
    calls = []
    hook = unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    yield calls
    hook.remove()


def test_a_canceled_request_stops_alone_and_the_others_are_undisturbed(make_engine, batch):
    uncanceled = make_engine(max_wait_ms=0)
    expected = [uncanceled.submit(request) for request in batch]
    uncanceled.start()
    steps = [[] for _ in batch]
    engine = make_engine(max_wait_ms=0)
    futures = [
        engine.submit(
            request,
            on_step=lambda *step, log=log: log.append(step),
            should_cancel=(lambda: len(steps[1]) >= 2) if index == 1 else None,
        )
        for index, (request, log) in enumerate(zip(batch, steps, strict=True))
    ]
    engine.start()
    results = {index: futures[index].result() for index in (0, 2)}

    with pytest.raises(GenerationCanceled, match="after step 2 of 6"):
        futures[1].result()
    assert steps[1] == [(1, 6), (2, 6)]  # no events after the cancel
    for index, result in results.items():
        assert len(steps[index]) == 6
        # Same batch, same rows computed: exactly the pixels of the batch nobody canceled.
        expected_pixels = np.asarray(expected[index].result().images[0])
        assert np.array_equal(np.asarray(result.images[0]), expected_pixels)


def test_the_batch_stops_when_every_request_is_canceled(make_engine, batch, unet_calls):
    engine = make_engine(max_wait_ms=0)
    futures = [engine.submit(request, should_cancel=lambda: True) for request in batch]
    engine.start()

    for future in futures:
        with pytest.raises(GenerationCanceled, match="after step 1 of 6"):
            future.result()
    assert unet_calls == [6]  # one step of 3 CFG requests, then nothing


def test_a_future_canceled_while_queued_never_runs(make_engine, batch):
    engine = make_engine(max_wait_ms=0)
    canceled, kept = engine.submit(batch[0]), engine.submit(batch[1])

    assert canceled.cancel()
    engine.start()

    assert kept.result().batch_size == 1
    assert canceled.cancelled()


def test_a_failing_callback_fails_only_its_own_request(make_engine, batch):
    def broken_progress(step, total):
        raise ConnectionError("channel layer is down")

    engine = make_engine(max_wait_ms=0)
    futures = [
        engine.submit(request, on_step=broken_progress if index == 0 else None)
        for index, request in enumerate(batch)
    ]
    engine.start()

    with pytest.raises(ConnectionError, match="channel layer is down"):
        futures[0].result()
    # The failed request left after its first step: the others ran on as two (batch_size:
    # the rows of their model calls, on average).
    assert [future.result().batch_size for future in futures[1:]] == [2, 2]


def test_a_request_past_the_time_limit_fails_with_the_reason(make_engine, batch):
    engine = make_engine(job_time_limit_s=0).start()

    with pytest.raises(GenerationFailed, match=r"step 1 of 6.*limit of 0 s.*fewer steps"):
        engine.submit(batch[0]).result()
