"""Which requests share a batch, and that sharing one does not change a request's image.

What "identical" means here, on a CPU in fp32:
- A request run alone through the engine gives exactly the pixels of
  StableDiffusionPipeline.__call__ with the same seed: same noise draws, same ops, same order.
- A request run in a batch gives exactly the pixels it gets alone: its noise comes from its
  own generator, and the few ops whose CPU kernel depends on the batch size run on its rows
  alone (gpu_workers.batch_invariance).
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import (
    EulerAncestralDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)

from gpu_workers.engine import BatchKey
from tests.gpu_workers.engine_runs import pixels, run_batch


def plain_pixels(pipe, request):
    """What plain diffusers makes for `request`, one job at a time, as runner.py used to."""
    output = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(request.seed),
    )
    return np.asarray(output.images[0])


@pytest.fixture
def varied_requests(tiny_request):
    """Compatible requests that differ in everything a batch lets differ; the third has no
    CFG (guidance 1), like a Turbo model's requests."""
    return [
        tiny_request,
        dataclasses.replace(tiny_request, prompt="the dog", negative_prompt="", seed=7),
        dataclasses.replace(tiny_request, prompt="a red car", guidance_scale=1.0, seed=8),
        dataclasses.replace(tiny_request, negative_prompt="ugly, text", guidance_scale=3.5),
    ]


def test_batch_key_ignores_what_may_differ_inside_a_batch(tiny_request):
    key = BatchKey.for_request(tiny_request)
    same = [
        dataclasses.replace(tiny_request, prompt="x", negative_prompt="y"),
        dataclasses.replace(tiny_request, seed=5, guidance_scale=2.0),
        # Per row in a running batch: each row has its own scheduler and prompt encoding.
        dataclasses.replace(tiny_request, steps=5, sampler="DDIM", clip_skip=2),
        dataclasses.replace(tiny_request, first_pass_steps=3),
    ]
    different = [
        dataclasses.replace(tiny_request, model_source="other/model"),
        dataclasses.replace(tiny_request, width=128),
        dataclasses.replace(tiny_request, height=128),
    ]

    assert all(BatchKey.for_request(request) == key for request in same)
    assert all(BatchKey.for_request(request) != key for request in different)
    assert (key.mode, key.adapters) == ("txt2img", ())


def test_compatible_requests_run_as_one_batch_and_others_apart(make_engine, tiny_request):
    other_size = dataclasses.replace(tiny_request, width=48, seed=2)
    requests = [tiny_request, other_size, dataclasses.replace(tiny_request, seed=3), other_size]

    results = run_batch(make_engine(max_wait_ms=0), requests)

    assert [result.batch_size for result in results] == [2, 2, 2, 2]
    assert [result.images[0].size for result in results] == [(64, 64), (48, 64)] * 2


def test_max_batch_caps_the_batch_size_in_arrival_order(make_engine, tiny_request):
    requests = [dataclasses.replace(tiny_request, seed=seed) for seed in range(5)]

    results = run_batch(make_engine(max_batch=2, max_wait_ms=0), requests)

    assert [result.batch_size for result in results] == [2, 2, 2, 2, 1]


def test_a_lone_request_starts_after_max_wait(make_engine, tiny_request):
    engine = make_engine(max_wait_ms=20).start()

    result = engine.submit(tiny_request).result(timeout=30)

    assert result.batch_size == 1


def test_alone_equals_the_plain_pipeline(make_engine, plain_pipeline, varied_requests):
    engine = make_engine(max_batch=1, max_wait_ms=0)

    results = run_batch(engine, varied_requests)

    for result, request in zip(results, varied_requests, strict=True):
        assert result.batch_size == 1
        assert np.array_equal(pixels(result), plain_pixels(plain_pipeline, request))


def test_batched_equals_alone(make_engine, varied_requests, tiny_request):
    alone = run_batch(make_engine(max_batch=1, max_wait_ms=0), varied_requests)
    batched = run_batch(make_engine(max_wait_ms=0), varied_requests)
    # The first request again, with batch-mates it never met before.
    strangers = [dataclasses.replace(tiny_request, prompt=f"stranger {n}", seed=n) for n in (1, 2)]
    first_among_strangers = run_batch(make_engine(max_wait_ms=0), [tiny_request, *strangers])[0]

    assert [result.batch_size for result in batched] == [4] * 4
    for batched_result, alone_result in zip(batched, alone, strict=True):
        assert np.array_equal(pixels(batched_result), pixels(alone_result))
    assert np.array_equal(pixels(first_among_strangers), pixels(batched[0]))


def test_a_named_scheduler_gets_per_request_step_noise(make_engine, plain_pipeline, tiny_request):
    # Euler a draws new noise every step: from each request's own generator.
    requests = [
        dataclasses.replace(tiny_request, sampler="Euler a", seed=seed)
        for seed in (1, 2, 3)
    ]
    plain_pipeline.scheduler, model_scheduler = (
        EulerAncestralDiscreteScheduler.from_config(plain_pipeline.scheduler.config),
        plain_pipeline.scheduler,
    )
    try:
        expected = [plain_pixels(plain_pipeline, request) for request in requests]
    finally:
        plain_pipeline.scheduler = model_scheduler

    alone = run_batch(make_engine(max_batch=1, max_wait_ms=0), requests[:1])[0]
    batched = run_batch(make_engine(max_wait_ms=0), requests)

    assert (alone.sampler, alone.scheduler_class) == ("Euler a", "EulerAncestralDiscreteScheduler")
    assert np.array_equal(pixels(alone), expected[0])
    for result, expected_pixels in zip(batched, expected, strict=True):
        assert np.array_equal(pixels(result), expected_pixels)


def test_guidance_embedding_unets_batch_too(make_engine, tiny_sd15, tmp_path, tiny_request):
    """LCM-distilled UNets take guidance as an input instead of running CFG."""
    folder = shutil.copytree(tiny_sd15, tmp_path / "lcm")
    config = json.loads((folder / "unet" / "config.json").read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": 16})
    unet.save_pretrained(folder / "unet")
    requests = [
        dataclasses.replace(tiny_request, model_source=str(folder), guidance_scale=guidance)
        for guidance in (8.0, 2.0)
    ]
    pipe = StableDiffusionPipeline.from_pretrained(
        folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)

    alone = run_batch(make_engine(max_batch=1, max_wait_ms=0), requests)
    batched = run_batch(make_engine(max_wait_ms=0), requests)

    for alone_result, batched_result, request in zip(alone, batched, requests, strict=True):
        assert np.array_equal(pixels(alone_result), plain_pixels(pipe, request))
        assert np.array_equal(pixels(batched_result), pixels(alone_result))
    assert not np.array_equal(pixels(alone[0]), pixels(alone[1]))  # guidance was used


def test_every_request_in_a_batch_gets_every_step_and_throttled_previews(
    make_engine, varied_requests
):
    events = [[] for _ in varied_requests]
    engine = make_engine(max_wait_ms=0, preview_interval_s=0)
    futures = [
        engine.submit(
            request,
            on_step=lambda step, total, log=log: log.append((step, total)),
            on_preview=lambda step, image, log=log: log.append((step, image)),
        )
        for request, log in zip(varied_requests, events, strict=True)
    ]
    engine.start()
    for future in futures:
        future.result()

    for request_events in events:
        steps = [event for event in request_events if isinstance(event[1], int)]
        previews = [event for event in request_events if not isinstance(event[1], int)]
        assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
        # Every step but the last, whose image follows at once; each just before its step's
        # progress.
        assert [step for step, _ in previews] == [1, 2, 3]
        assert request_events.index(previews[0]) == request_events.index((1, 4)) - 1
        assert all(image.mode == "RGB" and image.size == (8, 8) for _, image in previews)


def test_previews_are_throttled_per_request(make_engine, tiny_request):
    previews = []
    engine = make_engine(preview_interval_s=3600).start()

    engine.submit(tiny_request, on_preview=lambda *preview: previews.append(preview)).result()

    assert [step for step, _ in previews] == [1]  # the first comes at once, then the interval


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": 60}, "multiples of 8, not 60x64"),
        ({"height": 0}, "multiples of 8, not 64x0"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"sampler": "Karras"}, "Unknown sampler 'Karras'"),
    ],
)
def test_bad_requests_are_refused_at_submit(make_engine, tiny_request, change, message):
    with pytest.raises(ValueError, match=message):
        make_engine().submit(dataclasses.replace(tiny_request, **change))


# Continuous batching: rows at different steps share each model call.

MIXED_SAMPLERS = [("Euler", 4), ("DPM++ 2M Karras", 6), ("Heun", 3), ("Euler a", 5), ("PLMS", 4)]


@pytest.fixture
def mixed_requests(tiny_request):
    """Compatible requests with their own step counts and samplers (multistep history,
    Heun's two model calls per step, per-step noise), guidance and clip skip."""
    return [
        dataclasses.replace(
            tiny_request,
            prompt=f"{tiny_request.prompt} {n}",
            sampler=sampler,
            steps=steps,
            seed=n,
            guidance_scale=1.0 if n == 2 else 7.0 - n,
            clip_skip=2 if n == 3 else 1,
        )
        for n, (sampler, steps) in enumerate(MIXED_SAMPLERS)
    ]


def test_rows_with_different_steps_and_samplers_share_a_batch_as_alone(
    make_engine, mixed_requests
):
    alone = run_batch(make_engine(max_batch=1), mixed_requests)
    batched = run_batch(make_engine(), mixed_requests)

    assert [result.batch_size for result in alone] == [1] * len(mixed_requests)
    assert all(result.batch_size > 1 for result in batched)
    for batched_result, alone_result in zip(batched, alone, strict=True):
        assert batched_result.sampler == alone_result.sampler
        assert np.array_equal(pixels(batched_result), pixels(alone_result))


def test_requests_that_arrive_while_a_batch_runs_join_it_as_alone(
    make_engine, tiny_request, mixed_requests
):
    """Submitted from the first request's step callback, the others join the running batch
    at its next step boundary, a few steps behind it, and still make their image alone."""
    long_request = dataclasses.replace(tiny_request, steps=12, sampler="DPM++ 2M")
    alone = run_batch(make_engine(max_batch=1), [long_request, *mixed_requests])
    engine = make_engine()
    joined = []
    joined_at = {2: mixed_requests[:2], 5: mixed_requests[2:]}

    def on_step(step, total):
        for request in joined_at.get(step, []):
            joined.append(engine.submit(request))

    first = engine.submit(long_request, on_step=on_step)
    engine.start()
    results = [first.result(), *(future.result() for future in joined)]

    for result, alone_result in zip(results, alone, strict=True):
        assert result.batch_size > 1  # it shared model calls
        assert np.array_equal(pixels(result), pixels(alone_result))


def test_a_finished_row_leaves_without_waiting_for_the_batch(make_engine, tiny_request):
    short = dataclasses.replace(tiny_request, steps=2, seed=1)
    long_request = dataclasses.replace(tiny_request, steps=10, seed=2)
    engine = make_engine()
    short_done_at = []
    futures = {}

    def on_step(step, total):
        if futures["short"].done() and not short_done_at:
            short_done_at.append(step)

    futures["long"] = engine.submit(long_request, on_step=on_step)
    futures["short"] = engine.submit(short)
    engine.start()

    assert futures["long"].result().batch_size == 1  # alone for most of its steps
    assert futures["short"].result().batch_size == 2
    assert short_done_at == [3]  # delivered after its last step, before the long one's third


def test_batch_at_a_time_takes_no_one_in_while_it_runs(make_engine, tiny_request):
    engine = make_engine(continuous=False, max_wait_ms=0)
    later = []

    def on_step(step, total):
        if step == 1:
            later.append(engine.submit(dataclasses.replace(tiny_request, seed=9)))

    first = engine.submit(tiny_request, on_step=on_step)
    engine.start()

    assert first.result().batch_size == 1
    assert later[0].result().batch_size == 1


def test_an_idle_engine_starts_a_lone_request_without_waiting(make_engine, tiny_request):
    engine = make_engine(max_wait_ms=60_000).start()

    result = engine.submit(tiny_request).result(timeout=30)

    assert result.batch_size == 1


def test_a_waiting_job_of_another_batch_stops_the_running_batch_taking_joiners(
    make_engine, tiny_request
):
    engine = make_engine()
    later = {}

    def on_step(step, total):
        if step == 1:
            later["other size"] = engine.submit(dataclasses.replace(tiny_request, width=48))
            later["compatible"] = engine.submit(dataclasses.replace(tiny_request, seed=5))

    first = engine.submit(dataclasses.replace(tiny_request, steps=6), on_step=on_step)
    engine.start()

    assert first.result().batch_size == 1
    # The other size's job ran next, alone; the compatible one after it.
    assert later["other size"].result().batch_size == 1
    assert later["compatible"].result().batch_size == 1
