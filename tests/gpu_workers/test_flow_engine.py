"""txt2img through the engine for FLUX.1 and SD 3.x (issue #17), on the tiny models, on the
CPU in fp32:
- a request alone gives exactly the pixels of FluxPipeline / StableDiffusion3Pipeline with
  the same seed and settings;
- a request in a batch (rows at different steps, other seeds, guidance, step counts, SD3's
  CFG on and off) gives exactly the pixels it gets alone;
- each step but the last sends a cheap preview of the latents;
- what these families can't do yet is refused with a message naming the family."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from gpu_workers.requests import (
    EmbeddingRef,
    GenerationCanceled,
    GenerationFailed,
    GenerationRequest,
)
from tests.gpu_workers.engine_runs import flow_txt2img_pixels, pixels, run_batch


@pytest.fixture
def flow_request(flow_request):
    return dataclasses.replace(flow_request, height=64)


def test_a_request_alone_is_the_pipelines_image(make_engine, family, flow_model_dir, flow_request):
    steps, previews = [], []
    [result] = run_batch(
        make_engine(preview_interval_s=0),
        [flow_request],
        on_step=lambda step, total: steps.append((step, total)),
        on_preview=lambda step, image: previews.append((step, image.size)),
    )

    assert np.array_equal(pixels(result), flow_txt2img_pixels(family, flow_model_dir, flow_request))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # At latent resolution, from the 16-channel latents' linear map to RGB.
    assert previews == [(1, (8, 8)), (2, (8, 8)), (3, (8, 8))]
    assert result.scheduler_class == "FlowMatchEulerDiscreteScheduler"


def test_a_row_in_a_batch_is_its_image_alone(make_engine, family, flow_request):
    requests = [
        flow_request,
        dataclasses.replace(flow_request, prompt="the mat", seed=7, steps=6),
        # SD3 without CFG beside rows with it; for FLUX.1 another distilled guidance value.
        dataclasses.replace(flow_request, guidance_scale=1.0, seed=8, steps=3),
        dataclasses.replace(
            flow_request, negative_prompt="", seed=9, variation_seed=3, variation_strength=0.3
        ),
    ]
    batched = run_batch(make_engine(max_batch=4), requests)
    alone = [run_batch(make_engine(), [request])[0] for request in requests]

    assert [result.batch_size for result in batched] != [1] * 4  # they did share calls
    for n, (in_batch, by_itself) in enumerate(zip(batched, alone, strict=True)):
        assert np.array_equal(pixels(in_batch), pixels(by_itself)), n
    assert not np.array_equal(pixels(batched[0]), pixels(batched[1]))


def test_a_request_that_joins_a_running_batch_is_its_image_alone(make_engine, flow_request):
    late = dataclasses.replace(flow_request, seed=99, prompt="the cat")
    engine = make_engine(max_batch=2).start()
    joined = []

    def submit_late(step, total):
        if step == 2 and not joined:
            joined.append(engine.submit(late))

    first = engine.submit(flow_request, on_step=submit_late).result()
    second = joined[0].result()
    alone = run_batch(make_engine(), [late])[0]

    assert second.batch_size == 2 or first.batch_size == 2
    assert np.array_equal(pixels(second), pixels(alone))


def test_a_t5_prompt_past_the_limit_is_refused_never_cut(make_engine, family, flow_request):
    long_prompt = " ".join(["cat"] * 600)
    engine = make_engine()
    future = engine.submit(dataclasses.replace(flow_request, prompt=long_prompt))
    engine.start()
    name = {"flux": "FLUX.1", "sd3": "Stable Diffusion 3.x"}[family]
    limit = {"flux": 512, "sd3": 256}[family]

    with pytest.raises(GenerationFailed, match=rf"601 T5 tokens long; {name} models read at "
                       rf"most {limit}\. Shorten it"):
        future.result()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sampler": "DDIM"}, "run the flow-matching samplers Euler, DPM\\+\\+ 2M in the studio, "
                              "not DDIM"),
        ({"shift": 0.0}, "The shift must be above 0, not 0.0"),
        ({"clip_skip": 2}, "don't support clip skip"),
        ({"width": 72}, "multiples of 16, not 72x64"),
        ({"embeddings": (EmbeddingRef(sha256="0" * 64, source="/nowhere", name="style"),)},
         "don't support textual-inversion embeddings in the studio yet"),
        ({"prompt": "a [cat:dog:0.5] on the mat"}, "don't support prompt editing or alternation"),
    ],
)
def test_what_the_family_cannot_do_yet_is_refused(make_engine, flow_request, change, message):
    engine = make_engine()
    future = engine.submit(dataclasses.replace(flow_request, **change))
    engine.start()

    with pytest.raises(GenerationFailed, match=message):
        future.result()


def test_a_refused_row_leaves_its_batch_mates_alone(make_engine, flow_request):
    refused = dataclasses.replace(flow_request, sampler="DDIM", seed=5)
    engine = make_engine(max_batch=2)
    good, bad = engine.submit(flow_request), engine.submit(refused)
    engine.start()

    assert pixels(good.result()).shape == (64, 64, 3)
    with pytest.raises(GenerationFailed):
        bad.result()


def test_the_infotext_calls_the_flow_scheduler_euler(make_engine, flow_request):
    [result] = run_batch(make_engine(), [flow_request])

    assert (result.sampler, result.schedule_type) == ("Euler", None)


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_flow_batch_out_of_memory_is_split_until_it_fits(
    make_engine, flow_request, cpu_config, monkeypatch
):
    from gpu_workers.pipelines import load_pipeline, pipeline_family

    requests = [dataclasses.replace(flow_request, seed=seed) for seed in range(4)]
    expected = [pixels(run_batch(make_engine(), [request])[0]) for request in requests]
    pipe = load_pipeline(flow_request.model_source, cpu_config)
    transformer, real = pipe.transformer, pipe.transformer.forward
    # Two requests fit (SD3's CFG: four transformer rows), four do not.
    rows_per_request = 2 if pipeline_family(pipe) == "sd3" else 1

    def two_requests_at_most(hidden_states, *args, **kwargs):
        if hidden_states.shape[0] > 2 * rows_per_request:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(hidden_states, *args, **kwargs)

    monkeypatch.setattr(transformer, "forward", two_requests_at_most)
    steps = [[] for _ in requests]
    engine = make_engine(max_wait_ms=0)
    futures = [
        engine.submit(request, on_step=lambda *step, log=log: log.append(step))
        for request, log in zip(requests, steps, strict=True)
    ]
    engine.start()

    results = [future.result() for future in futures]
    assert [result.batch_size for result in results] == [2, 2, 2, 2]
    for result, expected_pixels in zip(results, expected, strict=True):
        assert np.array_equal(pixels(result), expected_pixels)
    assert steps == [[(1, 4), (2, 4), (3, 4), (4, 4)]] * 4


def test_a_canceled_flow_request_stops_and_leaves_its_batch_mates(make_engine, flow_request):
    other = dataclasses.replace(flow_request, seed=77)
    engine = make_engine(max_batch=2)
    canceled = engine.submit(flow_request, should_cancel=lambda: True)
    kept = engine.submit(other)
    engine.start()

    with pytest.raises(GenerationCanceled, match="Canceled after step 1 of 4"):
        canceled.result()
    assert np.array_equal(pixels(kept.result()), pixels(run_batch(make_engine(), [other])[0]))


def test_flux_schnell_has_no_guidance_and_reads_256_t5_tokens(make_engine, tmp_path):
    from gpu_workers.tiny_models import build_tiny_flux

    folder = build_tiny_flux(tmp_path / "tiny-flux1-schnell", schnell=True)
    request = GenerationRequest(
        model_source=str(folder), prompt="a cat on the mat", negative_prompt="", steps=4,
        guidance_scale=0.0, width=64, height=64, seed=5,
    )
    engine = make_engine()
    image = engine.submit(request)
    too_long = engine.submit(dataclasses.replace(request, prompt=" ".join(["cat"] * 300)))
    engine.start()
    made = pixels(image.result())  # before loading here: loads in two threads at once clash

    pipe = FluxPipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt=request.prompt, num_inference_steps=4, guidance_scale=0.0, width=64, height=64,
        max_sequence_length=256, generator=torch.Generator("cpu").manual_seed(5),
    ).images[0]
    assert np.array_equal(made, np.asarray(expected))
    refusal = "301 T5 tokens long; FLUX.1 models read at most 256"  # [schnell]'s limit
    with pytest.raises(GenerationFailed, match=refusal):
        too_long.result()
