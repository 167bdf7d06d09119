"""The engine vs plain diffusers on the tiny SD1.5-architecture model, on this CPU.

16 jobs (different prompts, negative prompts and seeds; one size and step count) submitted
at once by 16 threads to the Engine, against the same 16 queued at once and run one at a
time through StableDiffusionPipeline.__call__, as a peer UI runs its queue. Both measure
images per second, time from submit to the first step callback (what the browser sees as
the first `job.progress` event) and to the finished image.

Then the arrival process: `arrivals` jobs submitted at Poisson arrival times, at
`ARRIVAL_LOAD` of the rate the engine just made images at, to the engine batching
continuously (jobs join a running batch at its next step) and batch-at-a-time (a batch forms
once and takes no one in while it runs): the same throughput, and the latency each gives.

    python -m gpu_workers.bench.engine_cpu [--json PATH]
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from gpu_workers.bench.measure import (
    machine_info,
    make_requests,
    quiet_libraries,
    run_arrivals,
    run_engine,
    run_plain,
)
from gpu_workers.config import WorkerConfig
from gpu_workers.engine import Engine
from gpu_workers.tiny_models import TINY_SD15_NAME, build_tiny_sd15

# 128 px and 20 steps: a real step count, and latents (16x16) large enough that the UNet's
# math, not Python overhead, dominates a step. About 10 s of plain diffusers on 2 cores.
DEFAULTS = {
    "jobs": 16,
    "size": 128,
    "steps": 20,
    "guidance": 7.5,
    "max_batch": 16,
    "arrivals": 40,
}
# The arrival rate, as a fraction of the images/s the engine makes with every job queued at
# once: a busy service that still keeps up, where batches run while jobs arrive.
ARRIVAL_LOAD = 0.6
ARRIVAL_SEED = 16
MAX_WAIT_MS = 25  # the worker's default (STUDIO_MAX_WAIT_MS)
WARMUP_STEPS = 2  # oneDNN builds its kernels per shape on first use; steps do not matter


def run(
    *,
    model_dir: Path | None = None,
    jobs: int = DEFAULTS["jobs"],
    size: int = DEFAULTS["size"],
    steps: int = DEFAULTS["steps"],
    guidance: float = DEFAULTS["guidance"],
    max_batch: int = DEFAULTS["max_batch"],
    arrivals: int = DEFAULTS["arrivals"],
) -> dict:
    """Measure both ways and return the numbers (seconds) with the settings and machine."""
    machine = machine_info("cpu")
    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as scratch:
        model = build_tiny_sd15(model_dir or Path(scratch) / TINY_SD15_NAME)
        requests = make_requests(
            str(model), jobs, width=size, height=size, steps=steps, guidance=guidance
        )
        warmup = make_requests(
            str(model), jobs, width=size, height=size, steps=WARMUP_STEPS, guidance=guidance
        )

        pipe = StableDiffusionPipeline.from_pretrained(
            model, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
        )
        pipe.set_progress_bar_config(disable=True)
        run_plain(pipe, warmup[:1], device="cpu", queued=True)
        plain = run_plain(pipe, requests, device="cpu", queued=True)

        # The worker's defaults on a CPU: fp32, SDPA, VAE slicing.
        config = WorkerConfig(device="cpu", dtype=torch.float32)
        with Engine(config, max_batch=max_batch, max_wait_ms=MAX_WAIT_MS) as engine:
            engine.preload([str(model)])
            run_engine(engine, warmup, concurrency=jobs)
            batched = run_engine(engine, requests, concurrency=jobs)

        rate = ARRIVAL_LOAD * batched["images_per_s"]
        arriving = make_requests(
            str(model), arrivals, width=size, height=size, steps=steps, guidance=guidance
        )
        arrival_runs = {}
        for mode, continuous in (("continuous", True), ("batch_at_a_time", False)):
            with Engine(
                config, max_batch=max_batch, max_wait_ms=MAX_WAIT_MS, continuous=continuous
            ) as engine:
                run_engine(engine, warmup, concurrency=jobs)
                arrival_runs[mode] = run_arrivals(
                    engine, arriving, rate_per_s=rate, seed=ARRIVAL_SEED
                )

    # The load during the run, on a CPU shared with other processes.
    machine["load_average_after"] = os.getloadavg()[0]
    return {
        "machine": machine,
        "settings": {
            "model": "tiny SD1.5-architecture",
            "jobs": jobs,
            "width": size,
            "height": size,
            "steps": steps,
            "guidance": guidance,
            "scheduler": type(pipe.scheduler).__name__,
            "dtype": "fp32",
            "max_batch": max_batch,
            "max_wait_ms": MAX_WAIT_MS,
            "arrivals": arrivals,
            "arrival_load": ARRIVAL_LOAD,
        },
        "plain": plain,
        "engine": batched,
        "speedup": batched["images_per_s"] / plain["images_per_s"],
        "arrivals": arrival_runs,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=DEFAULTS["jobs"])
    parser.add_argument("--size", type=int, default=DEFAULTS["size"], help="width and height")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--max-batch", type=int, default=DEFAULTS["max_batch"])
    parser.add_argument(
        "--arrivals", type=int, default=DEFAULTS["arrivals"], help="jobs of the arrival process"
    )
    parser.add_argument("--model", type=Path, help="tiny model folder (built if missing)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    quiet_libraries()
    results = run(
        model_dir=args.model,
        jobs=args.jobs,
        size=args.size,
        steps=args.steps,
        max_batch=args.max_batch,
        arrivals=args.arrivals,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for name in ("plain", "engine"):
        numbers = results[name]
        print(
            f"{name:>6}: {numbers['images_per_s']:.2f} images/s, first step "
            f"p50 {numbers['first_step_p50_s']:.2f} s p95 {numbers['first_step_p95_s']:.2f} s, "
            f"image p50 {numbers['latency_p50_s']:.2f} s p95 {numbers['latency_p95_s']:.2f} s"
        )
    print(f"engine / plain: {results['speedup']:.2f}x images/s")
    for mode, numbers in results["arrivals"].items():
        print(
            f"arrivals at {numbers['offered_rate_per_s']:.2f}/s, {mode}: "
            f"{numbers['images_per_s']:.2f} images/s, first step p50 "
            f"{numbers['first_step_p50_s']:.2f} s p95 {numbers['first_step_p95_s']:.2f} s, image "
            f"p50 {numbers['latency_p50_s']:.2f} s p95 {numbers['latency_p95_s']:.2f} s"
        )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
