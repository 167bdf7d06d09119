"""The engine vs plain diffusers on the tiny FLUX.1 and SD 3.x models, on this CPU.

As `gpu_workers.bench.engine_cpu` does for SD1.5, per family: `jobs` jobs (different
prompts, negative prompts and seeds; one size and step count) submitted at once by as many
threads to the Engine, against the same jobs queued at once and run one at a time through
FluxPipeline.__call__ / StableDiffusion3Pipeline.__call__. FLUX.1 [dev] embeds its guidance
(one transformer row per job); SD 3.x runs CFG (two).

    python -m gpu_workers.bench.families_cpu [--json PATH] [--write docs/BENCHMARKS.md]
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline

from gpu_workers.bench.measure import (
    machine_info,
    make_requests,
    quiet_libraries,
    run_engine,
    run_plain,
)
from gpu_workers.bench.report import cpu_row, machine_line, write_section
from gpu_workers.config import WorkerConfig
from gpu_workers.engine import Engine
from gpu_workers.tiny_models import (
    TINY_FLUX_NAME,
    TINY_SD3_NAME,
    build_tiny_flux,
    build_tiny_sd3,
)

SECTION = "families-cpu"
# (builder, folder name, pipeline class, guidance: FLUX.1 [dev]'s distilled value, SD3's CFG)
FAMILIES = {
    "FLUX.1": (build_tiny_flux, TINY_FLUX_NAME, FluxPipeline, 3.5),
    "SD 3.x": (build_tiny_sd3, TINY_SD3_NAME, StableDiffusion3Pipeline, 5.0),
}
DEFAULTS = {"jobs": 16, "size": 128, "steps": 20, "max_batch": 16}
MAX_WAIT_MS = 25  # the worker's default (STUDIO_MAX_WAIT_MS)
WARMUP_STEPS = 2


def run(
    *,
    jobs: int = DEFAULTS["jobs"],
    size: int = DEFAULTS["size"],
    steps: int = DEFAULTS["steps"],
    max_batch: int = DEFAULTS["max_batch"],
) -> dict:
    """Measure both ways for each family; the numbers (seconds) with settings and machine."""
    machine = machine_info("cpu")
    config = WorkerConfig(device="cpu", dtype=torch.float32)
    families = {}
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as scratch:
        for family, (build, name, pipeline_class, guidance) in FAMILIES.items():
            model = str(build(Path(scratch) / name))
            requests = make_requests(
                model, jobs, width=size, height=size, steps=steps, guidance=guidance
            )
            warmup = make_requests(
                model, jobs, width=size, height=size, steps=WARMUP_STEPS, guidance=guidance
            )
            pipe = pipeline_class.from_pretrained(model, dtype=torch.float32)
            pipe.set_progress_bar_config(disable=True)
            run_plain(pipe, warmup[:1], device="cpu", queued=True)
            plain = run_plain(pipe, requests, device="cpu", queued=True)
            with Engine(config, max_batch=max_batch, max_wait_ms=MAX_WAIT_MS) as engine:
                engine.preload([model])
                run_engine(engine, warmup, concurrency=jobs)
                batched = run_engine(engine, requests, concurrency=jobs)
            families[family] = {
                "pipeline": pipeline_class.__name__,
                "guidance": guidance,
                "plain": plain,
                "engine": batched,
                "speedup": batched["images_per_s"] / plain["images_per_s"],
            }
    machine["load_average_after"] = os.getloadavg()[0]
    return {
        "machine": machine,
        "settings": {
            "jobs": jobs,
            "width": size,
            "height": size,
            "steps": steps,
            "scheduler": "FlowMatchEulerDiscreteScheduler",
            "dtype": "fp32",
            "max_batch": max_batch,
            "max_wait_ms": MAX_WAIT_MS,
        },
        "families": families,
    }


def section(results: dict, command: str) -> str:
    settings = results["settings"]
    jobs = settings["jobs"]
    lines = [
        "## CPU: engine vs plain diffusers on the tiny FLUX.1 and SD 3.x models",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_line(results['machine'])}",
        "",
        f"{jobs} jobs per family on tiny random-weight models of the real architectures "
        f"(`gpu_workers.tiny_models`): {settings['width']}x{settings['height']}, "
        f"{settings['steps']} steps, {settings['scheduler']}, {settings['dtype']}; different "
        "prompts, negative prompts and seeds. FLUX.1 [dev]: distilled guidance 3.5, one "
        "transformer row per job, T5 padded to 512 tokens as the pipeline pads it; SD 3.x: CFG "
        "5, two rows per job, T5 to 256. Plain diffusers: the same jobs queued at once and run "
        "one at a time through the family's pipeline `__call__`. Engine: "
        f"{jobs} threads submit one job each at once; max batch {settings['max_batch']}, max "
        f"wait {settings['max_wait_ms']:g} ms. Both warmed up first.",
        "",
        "| family | run | images/s | wall (s) | submit → first step p50 / p95 (s) "
        "| submit → image p50 / p95 (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for family, numbers in results["families"].items():
        lines.append(f"| {family} " + cpu_row(f"plain `{numbers['pipeline']}`", numbers["plain"]))
        lines.append(f"| {family} " + cpu_row(f"engine, {jobs} concurrent", numbers["engine"]))
    lines.append("")
    speedups = ", ".join(
        f"{family} **{numbers['speedup']:.1f}x**" for family, numbers in results["families"].items()
    )
    lines.append(
        f"Engine / plain, images per second: {speedups}. A row's image is bitwise its image "
        "alone, and alone plain diffusers' (tests/gpu_workers/test_flow_engine.py). On a CPU "
        "both families' steps are mostly attention over each row's padded T5 sequence "
        "(FLUX.1 512 tokens, SD 3.x 256 and CLIP's 77) and its 64 image tokens, which "
        "batching does not make cheaper there: the engine gains little over plain diffusers "
        "or falls below it (its threads, per-row schedulers and batch-invariance hooks cost "
        "time too). On a loaded, shared CPU the ratio swings widely from run to run (plain "
        "diffusers suffers more), so compare runs at similar load. No GPU numbers for these "
        "families yet."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=DEFAULTS["jobs"])
    parser.add_argument("--size", type=int, default=DEFAULTS["size"], help="width and height")
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--max-batch", type=int, default=DEFAULTS["max_batch"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--write", type=Path, help="write its section of this markdown file")
    args = parser.parse_args(argv)
    quiet_libraries()
    results = run(jobs=args.jobs, size=args.size, steps=args.steps, max_batch=args.max_batch)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.write:
        command = "python -m gpu_workers.bench.families_cpu --write docs/BENCHMARKS.md"
        write_section(args.write, SECTION, section(results, command))
    for family, numbers in results["families"].items():
        for name in ("plain", "engine"):
            measured = numbers[name]
            print(
                f"{family} {name:>6}: {measured['images_per_s']:.2f} images/s, image p50 "
                f"{measured['latency_p50_s']:.2f} s p95 {measured['latency_p95_s']:.2f} s"
            )
        print(f"{family} engine / plain: {numbers['speedup']:.2f}x images/s")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
