"""Serving on a GPU, tested on the CPU (issue #16): model calls padded to fixed batch sizes
(buckets) and their warm-up, the VAE decoding finished images in chunks into 8-bit pixels on
the device, fused attention projections, and the default batch size.

A padded call computes each real row as that row alone (gpu_workers.batch_invariance), so
on the CPU every image stays bitwise the request's alone.
"""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.attention_processor import FusedAttnProcessor2_0
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from gpu_workers import engine as engine_module
from gpu_workers.denoise import DecodedImages, RunningBatch, bucket_for, pil_images
from gpu_workers.metrics import WARMUP_SECONDS
from gpu_workers.pipelines import load_pipeline
from gpu_workers.runner import default_max_batch
from tests.gpu_workers.engine_runs import batch_sizes_seen, pixels, run_batch
from tests.gpu_workers.test_loras import build_lora


@pytest.fixture
def varied_requests(tiny_request):
    """Three with CFG and one without: 7 UNet rows, which no bucket of powers of 2 holds
    exactly; the last prompt is longer than a chunk of 75 tokens, so its rows are a model
    call of their own (another token count)."""
    return [
        tiny_request,
        dataclasses.replace(tiny_request, prompt="the dog", negative_prompt="", seed=7),
        dataclasses.replace(tiny_request, prompt="a red car", guidance_scale=1.0, seed=8),
        dataclasses.replace(tiny_request, prompt="a tree, " * 40, guidance_scale=3.5, seed=9),
    ]


@pytest.mark.parametrize("buckets", [(1, 2, 4, 8, 16, 32), (1, 2, 4), (3,)])
def test_padded_model_calls_give_each_row_its_image_alone(
    engines, cpu_config, varied_requests, buckets
):
    alone = run_batch(engines(cpu_config, max_batch=1), varied_requests)
    config = dataclasses.replace(cpu_config, batch_buckets=buckets)
    pipe = load_pipeline(varied_requests[0].model_source, config)

    with batch_sizes_seen(pipe.unet) as sizes:
        padded = run_batch(engines(config), varied_requests)

    assert set(sizes) <= set(buckets)
    for padded_result, alone_result in zip(padded, alone, strict=True):
        assert padded_result.batch_size == 4
        assert np.array_equal(pixels(padded_result), pixels(alone_result))


def test_the_unet_sees_only_bucket_sizes_as_rows_join_and_leave(engines, cpu_config, tiny_request):
    """Continuous batching changes a batch's rows at every join and finish: without buckets
    the UNet sees each count (a compiled UNet would compile each), with them only buckets."""
    requests = [
        dataclasses.replace(tiny_request, steps=steps, seed=steps, guidance_scale=guidance)
        for steps, guidance in [(2, 7.0), (3, 1.0), (5, 7.0), (6, 7.0), (8, 1.0)]
    ]
    seen = {}
    for buckets in [(), (1, 2, 4, 8)]:
        config = dataclasses.replace(cpu_config, batch_buckets=buckets)
        pipe = load_pipeline(tiny_request.model_source, config)
        with batch_sizes_seen(pipe.unet) as sizes:
            run_batch(engines(config), requests)
        seen[buckets] = set(sizes)

    assert seen[()] - {1, 2, 4, 8}  # e.g. 8 rows, then 7, 5, 3 as requests finish
    assert seen[(1, 2, 4, 8)] <= {1, 2, 4, 8}


def test_a_call_larger_than_the_largest_bucket_is_split_into_bucket_sized_calls(
    engines, cpu_config, varied_requests
):
    config = dataclasses.replace(cpu_config, batch_buckets=(2,))
    pipe = load_pipeline(varied_requests[0].model_source, config)
    engine = engines(config)
    engine.preload([varied_requests[0].model_source])  # the warm-up's call of 2 rows

    with batch_sizes_seen(pipe.unet) as sizes:
        run_batch(engine, varied_requests[:3])

    # 5 UNet rows of one token count: calls of 2, 2 and 1 padded to 2, at each of 4 steps.
    assert sizes == [2, 2, 2] * 4


@pytest.mark.parametrize(("rows", "bucket"), [(1, 1), (3, 4), (4, 4), (5, 8), (32, 32)])
def test_bucket_for_is_the_smallest_bucket_that_holds_the_rows(rows, bucket):
    assert bucket_for(rows, (1, 2, 4, 8, 16, 32)) == bucket


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_pixels_made_on_the_device_equal_the_image_processors(dtype):
    processor = VaeImageProcessor(vae_scale_factor=8)
    generator = torch.Generator().manual_seed(0)
    decoded = (torch.rand(3, 3, 16, 24, generator=generator) * 2.4 - 1.2).to(dtype)
    # Values that land exactly half way between two grey levels, where rounding differs most.
    decoded[0, 0, 0, :8] = (torch.arange(8) + 0.5) / 255 * 2 - 1

    ours = pil_images(processor, decoded)
    theirs = processor.postprocess(decoded, output_type="pil")

    assert [image.mode for image in ours] == [image.mode for image in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        assert np.array_equal(np.asarray(mine), np.asarray(reference))


def finished_rows(pipe, requests):
    """`requests` denoised to their last step in a RunningBatch (the batch, its rows)."""
    batch = RunningBatch(pipe, torch.device("cpu"))
    rows = [batch.add(request) for request in requests]
    while not all(row.done for row in rows):
        batch.step()
    return batch, rows


def test_finished_images_are_decoded_in_chunks_padded_to_their_buckets(cpu_config, tiny_request):
    requests = [dataclasses.replace(tiny_request, steps=1, seed=seed) for seed in range(5)]
    pipe = load_pipeline(tiny_request.model_source, cpu_config)
    batch, rows = finished_rows(pipe, requests)
    alone = batch.decode(rows).images()  # one image per VAE call: the CPU's default

    batch.decode_chunk, batch.buckets = 3, (1, 2, 4)
    vae_slicing = pipe.vae.use_slicing
    pipe.vae.disable_slicing()
    try:
        with batch_sizes_seen(pipe.vae.decoder) as sizes:
            chunked = batch.decode(rows).images()
    finally:
        pipe.vae.use_slicing = vae_slicing

    assert sizes == [4, 2]  # chunks of 3 and 2 images, the first padded to its bucket
    assert [image.size for image in chunked] == [image.size for image in alone]
    for image, reference in zip(chunked, alone, strict=True):
        # A batch's VAE attention rounds otherwise on a CPU: a grey level at most.
        difference = np.abs(np.asarray(image, dtype=int) - np.asarray(reference, dtype=int))
        assert difference.max() <= 1


def test_warm_up_runs_every_bucket_up_to_the_largest_batch_once(engines, cpu_config, tiny_request):
    config = dataclasses.replace(
        cpu_config, batch_buckets=(1, 2, 4, 8, 16), vae_decode_chunk=2, vae_slicing=False
    )
    engine = engines(config, max_batch=3)  # 6 UNet rows with CFG: up to the bucket of 8
    pipe = load_pipeline(tiny_request.model_source, config)

    with batch_sizes_seen(pipe.unet) as unet_sizes, batch_sizes_seen(pipe.vae.decoder) as vae:
        seconds = engine.preload([tiny_request.model_source])
        again = engine.preload([tiny_request.model_source])

    assert unet_sizes == [1, 2, 4, 8]
    assert vae == [1, 2]
    assert seconds[tiny_request.model_source] > 0
    assert WARMUP_SECONDS.labels(device="cpu")._value.get() == seconds[tiny_request.model_source]
    assert again == {tiny_request.model_source: 0.0}  # once per loaded model


def test_no_warm_up_without_buckets(engines, cpu_config, tiny_request):
    pipe = load_pipeline(tiny_request.model_source, cpu_config)

    with batch_sizes_seen(pipe.unet) as sizes:
        seconds = engines(cpu_config).preload([tiny_request.model_source])

    assert sizes == []
    assert seconds == {tiny_request.model_source: 0.0}


def fused(pipe):
    return any(
        isinstance(processor, FusedAttnProcessor2_0)
        for processor in pipe.unet.attn_processors.values()
    )


def test_fused_attention_projections_stay_off_for_lora_batches(
    engines, cpu_config, tiny_request, tiny_sd15, tmp_path
):
    """LoRAs act on the separate query, key and value layers: a LoRA batch runs unfused and
    makes the image it makes without fusing; other batches run fused."""
    lora = build_lora(tiny_sd15, tmp_path / "lora", seed=3)
    with_lora = dataclasses.replace(tiny_request, loras=(lora,))
    plain_config = dataclasses.replace(cpu_config, lora_cache_dir=str(tmp_path / "cache"))
    fused_config = dataclasses.replace(plain_config, fuse_qkv=True)
    fused_pipe = load_pipeline(tiny_request.model_source, fused_config)
    during = []

    def fused_now(step, total):
        during.append(fused(fused_pipe))

    reference = run_batch(engines(plain_config), [with_lora, tiny_request])
    first = run_batch(engines(fused_config), [tiny_request], on_step=fused_now)
    lora_result = run_batch(engines(fused_config), [with_lora], on_step=fused_now)
    last = run_batch(engines(fused_config), [tiny_request], on_step=fused_now)

    assert during == [True] * 4 + [False] * 4 + [True] * 4
    assert np.array_equal(pixels(lora_result[0]), pixels(reference[0]))
    # Fused, one product instead of three: the same image up to rounding.
    for result in (first[0], last[0]):
        difference = np.abs(pixels(result).astype(int) - pixels(reference[1]).astype(int))
        assert difference.max() <= 2


@pytest.mark.parametrize(
    ("gib", "batch"), [(8, 1), (16, 2), (24, 5), (40, 12), (80, 28), (141, 32)]
)
def test_the_default_batch_is_sized_from_the_gpus_memory(monkeypatch, cpu_config, gib, batch):
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device: type("Properties", (), {"total_memory": gib * 1024**3}),
    )
    assert default_max_batch(dataclasses.replace(cpu_config, device="cuda")) == batch
    assert default_max_batch(cpu_config) == 8


def test_a_preview_copied_from_the_device_goes_out_at_a_later_step(
    engines, cpu_config, tiny_request, monkeypatch
):
    """From a GPU a preview's latent is copied to the host without waiting for it: the
    preview, named by its own step, goes out once the copy is done, before the progress of
    the step then (here each copy is done one step later)."""

    class CopyDoneAtTheNextLook(engine_module._PreviewCopy):
        def __init__(self, step, latent):
            super().__init__(step, latent)
            self.looks = 0

        def ready(self):
            self.looks += 1
            return self.looks > 1

    monkeypatch.setattr(engine_module, "_PreviewCopy", CopyDoneAtTheNextLook)
    events = []
    engine = engines(cpu_config, preview_interval_s=0)

    run_batch(
        engine,
        [tiny_request],
        on_step=lambda step, total: events.append(("step", step)),
        on_preview=lambda step, image: events.append(("preview", step, image.size)),
    )

    assert events == [
        ("step", 1),
        ("preview", 1, (8, 8)),
        ("step", 2),
        ("preview", 2, (8, 8)),
        ("step", 3),
        ("preview", 3, (8, 8)),
        ("step", 4),
    ]


class HostReads(TorchDispatchMode):
    """Counts reads of a tensor's value by the host (`.item()`, `bool(tensor)`, a tensor
    made from one): on a GPU each waits for the device to finish its queued work."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default):
            self.count += 1
        return func(*args, **(kwargs or {}))


# Not Euler: its step compares its sigma, which diffusers keeps on the host on purpose (no
# wait on a GPU), but on a CPU every tensor is on the host, so the count can't tell.
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M"])
def test_a_step_never_waits_for_the_device(cpu_config, tiny_request, sampler):
    """A batch's steps, with CFG and without, rows at different steps, buckets on: the loop
    reads no tensor's value on the host (what other samplers' schedulers do inside
    diffusers is theirs)."""
    pipe = load_pipeline(tiny_request.model_source, cpu_config)
    batch = RunningBatch(pipe, torch.device("cpu"), buckets=(1, 2, 4, 8))
    with batch:
        batch.add(dataclasses.replace(tiny_request, sampler=sampler, steps=6))
        batch.step()  # a scheduler finds its first step's index once
        batch.add(dataclasses.replace(tiny_request, sampler=sampler, guidance_scale=1.0, seed=2))
        batch.step()
        with HostReads() as reads:
            for _ in range(3):
                batch.step()

    assert reads.count == 0


def test_compiled_models_warmed_up_never_recompile_in_service(engines, cpu_config, tiny_request):
    """torch.compile on the CPU (minutes: the warm-up compiles the UNet and VAE decoder):
    after the warm-up, requests with CFG and without, alone and together, run without a
    single recompile."""
    config = dataclasses.replace(
        cpu_config, compile=True, compile_mode="default", batch_buckets=(1, 2, 4)
    )
    engine = engines(config, max_batch=2).start()
    seconds = engine.preload([tiny_request.model_source])[tiny_request.model_source]
    requests = [
        tiny_request,
        dataclasses.replace(tiny_request, guidance_scale=1.0, seed=2, steps=2),
        dataclasses.replace(tiny_request, seed=3, steps=3),
    ]

    with torch._dynamo.config.patch(error_on_recompile=True):
        alone = engine.submit(requests[1]).result()
        together = [engine.submit(request) for request in requests]
        results = [future.result() for future in together]

    assert seconds > 0
    assert alone.batch_size == 1 and max(result.batch_size for result in results) == 2


def test_sdxl_warms_up_and_pads_its_added_conditioning_as_alone(
    engines, cpu_config, tiny_request, tiny_sdxl_model_dir
):
    """SDXL's pooled prompts and size conditioning are padded with the rest of a call."""
    requests = [
        dataclasses.replace(tiny_request, model_source=str(tiny_sdxl_model_dir), seed=seed)
        for seed in (1, 2)
    ]
    requests[1] = dataclasses.replace(requests[1], guidance_scale=1.0, prompt="a red car")
    alone = run_batch(engines(cpu_config, max_batch=1), requests)
    config = dataclasses.replace(cpu_config, batch_buckets=(1, 2, 4))
    pipe = load_pipeline(requests[0].model_source, config)
    engine = engines(config, max_batch=2)

    with batch_sizes_seen(pipe.unet) as warm_up_sizes:
        engine.preload([requests[0].model_source])
    with batch_sizes_seen(pipe.unet) as sizes:
        padded = run_batch(engine, requests)

    assert warm_up_sizes == [1, 2, 4]
    assert set(sizes) == {4}  # 3 UNet rows, padded
    for padded_result, alone_result in zip(padded, alone, strict=True):
        assert np.array_equal(pixels(padded_result), pixels(alone_result))


def test_a_warm_up_out_of_memory_is_logged_once_and_jobs_still_run(
    engines, cpu_config, tiny_request, monkeypatch, caplog
):
    config = dataclasses.replace(cpu_config, batch_buckets=(1, 2, 4, 8))
    pipe = load_pipeline(tiny_request.model_source, config)
    real_forward = pipe.unet.forward

    def forward(sample, *args, **kwargs):
        if sample.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_forward(sample, *args, **kwargs)

    monkeypatch.setattr(pipe.unet, "forward", forward)
    engine = engines(config, max_batch=4).start()

    engine.preload([tiny_request.model_source])
    result = engine.submit(tiny_request).result()  # 2 UNet rows: fits

    warnings = [record.getMessage() for record in caplog.records]
    warnings = [message for message in warnings if "warming" in message]
    assert len(warnings) == 1 and "lower STUDIO_MAX_BATCH" in warnings[0]
    assert result.images


@pytest.mark.parametrize(
    ("copied_at_once", "short_done_at_each_unet_call"),
    [
        (True, [False, False, True, True, True]),  # a CPU: delivered before the next call
        (False, [False, False, False, True, True]),  # a GPU: after the next call is queued
    ],
)
def test_a_finished_image_still_on_its_way_from_the_device_is_delivered_after_the_next_step(
    engines, cpu_config, tiny_request, monkeypatch, copied_at_once, short_done_at_each_unet_call
):
    """The engine queues the next step before it waits for a decode's copy to the host, so
    the device runs the decode and the step back to back; the images are the same."""
    monkeypatch.setattr(DecodedImages, "ready", lambda self: copied_at_once)
    short = dataclasses.replace(tiny_request, steps=2, seed=1)
    long_request = dataclasses.replace(tiny_request, steps=5, seed=2)
    alone = run_batch(engines(cpu_config, max_batch=1), [short, long_request])
    engine = engines(cpu_config)
    pipe = load_pipeline(tiny_request.model_source, cpu_config)
    futures = [engine.submit(short), engine.submit(long_request)]
    short_done = []
    hook = pipe.unet.register_forward_pre_hook(lambda *_: short_done.append(futures[0].done()))
    try:
        engine.start()
        results = [future.result() for future in futures]
    finally:
        hook.remove()

    assert short_done == short_done_at_each_unet_call
    for result, alone_result in zip(results, alone, strict=True):
        assert np.array_equal(pixels(result), pixels(alone_result))


def test_an_unpadded_decode_keeps_the_latents_layout(
    engines, cpu_config, tiny_request, tiny_sdxl_model_dir
):
    """SDXL img2img's latents come out of its VAE encoder in another layout, which the VAE
    decoder's kernels depend on: a chunk that needs no padding is decoded as it is."""
    gradient = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3)
    request = dataclasses.replace(
        tiny_request,
        model_source=str(tiny_sdxl_model_dir),
        init_image=Image.fromarray(gradient.astype(np.uint8), "RGB"),
        strength=0.5,
        steps=8,
        width=64,
        height=48,
    )
    plain = run_batch(engines(cpu_config), [request])[0]
    bucketed = run_batch(engines(dataclasses.replace(cpu_config, batch_buckets=(1, 2))), [request])

    assert np.array_equal(pixels(bucketed[0]), pixels(plain))
