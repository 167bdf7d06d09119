import copy
import dataclasses
import json
import shutil
import threading

import numpy as np
import pytest
import torch
from diffusers import (
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)

from gpu_workers.pipelines import load_pipeline
from gpu_workers.requests import GenerationCanceled
from gpu_workers.runner import engine_options_from_env, generate, generate_all


def pixels(result):
    return np.asarray(result.images[0])


def test_generates_an_rgb_image_and_reports_every_step(tiny_request, cpu_config):
    steps = []

    result = generate(tiny_request, config=cpu_config, on_step=lambda *step: steps.append(step))

    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    (image,) = result.images
    assert image.mode == "RGB" and image.size == (64, 64)
    assert result.seed == tiny_request.seed
    assert (result.sampler, result.scheduler_class) == ("Euler", "EulerDiscreteScheduler")
    assert result.elapsed_s > 0


@pytest.mark.parametrize(("width", "height"), [(64, 48), (72, 40), (256, 256)])
def test_requested_size_is_honoured(tiny_request, cpu_config, width, height):
    request = dataclasses.replace(tiny_request, width=width, height=height, steps=2)

    result = generate(request, config=cpu_config)

    assert result.images[0].size == (width, height)


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_request, cpu_config):
    first = generate(tiny_request, config=cpu_config)
    again = generate(tiny_request, config=cpu_config)
    other = generate(dataclasses.replace(tiny_request, seed=4321), config=cpu_config)

    assert first.images[0].tobytes() == again.images[0].tobytes()
    assert not np.array_equal(pixels(first), pixels(other))


def test_cancel_stops_the_denoising_loop_and_raises(tiny_request, cpu_config):
    request = dataclasses.replace(tiny_request, steps=6)
    unet = load_pipeline(request.model_source, cpu_config).unet
    unet_calls = []
    hook = unet.register_forward_hook(lambda *_: unet_calls.append(1))
    steps, cancel_checks = [], []
    try:
        with pytest.raises(GenerationCanceled, match="step 2 of 6"):
            generate(
                request,
                config=cpu_config,
                on_step=lambda *step: steps.append(step),
                should_cancel=lambda: cancel_checks.append(1) or len(cancel_checks) >= 2,
            )
    finally:
        hook.remove()

    assert steps == [(1, 6), (2, 6)]
    assert len(unet_calls) == 2  # the four remaining steps never ran


def test_pipeline_runs_normally_after_a_cancel(tiny_request, cpu_config):
    with pytest.raises(GenerationCanceled):
        generate(tiny_request, config=cpu_config, should_cancel=lambda: True)
    steps = []

    result = generate(tiny_request, config=cpu_config, on_step=lambda *step: steps.append(step))

    assert len(steps) == tiny_request.steps
    assert result.images


def test_concurrent_jobs_on_one_pipeline_match_serial_runs(tiny_request, cpu_config):
    requests = (tiny_request, dataclasses.replace(tiny_request, seed=99, steps=3))
    expected = [pixels(generate(request, config=cpu_config)) for request in requests]
    outcomes = [None] * len(requests)

    def run(index, request):
        try:
            outcomes[index] = pixels(generate(request, config=cpu_config))
        except Exception as error:  # reported by the assertion below, not lost in the thread
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=item) for item in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # The shared scheduler keeps per-run state; without the inference lock the runs clash.
    for outcome, expected_pixels in zip(outcomes, expected, strict=True):
        assert isinstance(outcome, np.ndarray), outcome
        assert np.array_equal(outcome, expected_pixels)


def with_scheduler(folder, scheduler_class, destination, **scheduler_config):
    """A copy of a diffusers folder that uses another scheduler, as a model could ship."""
    shutil.copytree(folder, destination)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler = scheduler_class.from_config(config, **scheduler_config)
    scheduler.save_pretrained(destination / "scheduler")
    model_index = json.loads((destination / "model_index.json").read_text())
    model_index["scheduler"] = ["diffusers", scheduler_class.__name__]
    (destination / "model_index.json").write_text(json.dumps(model_index))
    return destination


@pytest.mark.parametrize(
    ("scheduler_class", "scheduler_config", "sampler"),
    [
        (HeunDiscreteScheduler, {}, "Heun"),  # two model calls per step
        (PNDMScheduler, {"skip_prk_steps": True}, "PLMS"),  # SD1.5's own; one extra call
        (DPMSolverMultistepScheduler, {}, "DPM++ 2M"),
        (DDPMScheduler, {"clip_sample": False}, "DDPMScheduler"),  # no A1111 name
    ],
)
def test_other_schedulers_report_steps_and_their_a1111_name(
    tiny_sd15, tiny_request, cpu_config, tmp_path, scheduler_class, scheduler_config, sampler
):
    folder = with_scheduler(tiny_sd15, scheduler_class, tmp_path / "model", **scheduler_config)
    request = dataclasses.replace(tiny_request, model_source=str(folder), steps=3)
    steps = []

    result = generate(request, config=cpu_config, on_step=lambda *step: steps.append(step))

    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert (result.sampler, result.scheduler_class) == (sampler, scheduler_class.__name__)


def test_progress_callbacks_run_on_the_calling_thread(tiny_request, cpu_config):
    threads = set()

    generate(
        tiny_request,
        config=cpu_config,
        on_step=lambda *step: threads.add(threading.current_thread()),
        on_preview=lambda *preview: threads.add(threading.current_thread()),
    )

    assert threads == {threading.current_thread()}


def test_engine_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_BATCH", "16")
    monkeypatch.setenv("STUDIO_MAX_WAIT_MS", "0")
    monkeypatch.setenv("STUDIO_JOB_TIME_LIMIT_S", "600")

    assert engine_options_from_env() == {
        "max_batch": 16,
        "max_wait_ms": 0.0,
        "continuous": True,
        "job_time_limit_s": 600.0,
    }
    monkeypatch.setenv("STUDIO_CONTINUOUS_BATCHING", "0")
    assert engine_options_from_env()["continuous"] is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STUDIO_MAX_BATCH", "0"),
        ("STUDIO_MAX_BATCH", "many"),
        ("STUDIO_MAX_WAIT_MS", "-1"),
        ("STUDIO_CONTINUOUS_BATCHING", "maybe"),
    ],
)
def test_bad_engine_options_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        engine_options_from_env()


def test_a_batch_size_above_one_reports_each_step_once_all_images_made_it(
    tiny_request, cpu_config
):
    requests = [dataclasses.replace(tiny_request, seed=tiny_request.seed + n) for n in range(3)]
    steps, previews = [], []

    results = generate_all(
        requests,
        config=cpu_config,
        on_step=lambda *step: steps.append(step),
        on_preview=lambda *preview: previews.append(preview),
    )

    assert [result.seed for result in results] == [1234, 1235, 1236]
    assert steps == [(step, 4) for step in range(1, 5)]
    assert previews and all(image.size == (8, 8) for _, image in previews)
    assert len({result.images[0].tobytes() for result in results}) == 3


def test_canceling_a_batch_size_job_cancels_every_image(tiny_request, cpu_config):
    requests = [dataclasses.replace(tiny_request, seed=n) for n in range(2)]
    with pytest.raises(GenerationCanceled):
        generate_all(requests, config=cpu_config, should_cancel=lambda: True)


def test_clip_skip_2_is_the_text_encoder_without_its_last_layer(
    tiny_request, cpu_config, plain_pipeline
):
    skipped = dataclasses.replace(tiny_request, clip_skip=2)
    # The tiny text encoder has 2 layers: skipping one is the pipeline with only the first,
    # for the negative prompt too (as in A1111; diffusers' clip_skip skips the prompt's only).
    one_layer = copy.deepcopy(plain_pipeline.text_encoder)
    layers = getattr(one_layer, "text_model", one_layer).encoder.layers
    del layers[1:]
    pipe = StableDiffusionPipeline(
        **{**plain_pipeline.components, "text_encoder": one_layer},
        requires_safety_checker=False,
    )

    result = generate(skipped, config=cpu_config)

    expected = pipe(
        prompt=skipped.prompt,
        negative_prompt=skipped.negative_prompt,
        num_inference_steps=skipped.steps,
        guidance_scale=skipped.guidance_scale,
        width=skipped.width,
        height=skipped.height,
        generator=torch.Generator("cpu").manual_seed(skipped.seed),
    ).images[0]
    assert np.array_equal(pixels(result), np.asarray(expected))
    not_skipped = dataclasses.replace(skipped, clip_skip=1)
    assert not np.array_equal(pixels(result), pixels(generate(not_skipped, config=cpu_config)))


@pytest.mark.parametrize("clip_skip", [0, 13])
def test_clip_skip_out_of_range_is_refused(tiny_request, cpu_config, clip_skip):
    with pytest.raises(ValueError, match=f"clip_skip must be 1 to 12, not {clip_skip}"):
        generate(dataclasses.replace(tiny_request, clip_skip=clip_skip), config=cpu_config)
