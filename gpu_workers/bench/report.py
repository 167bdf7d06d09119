"""Benchmark results as markdown sections of docs/BENCHMARKS.md, each replaceable.

A section sits between `<!-- bench:KEY -->` and `<!-- /bench:KEY -->`; writing it again
replaces it in place, a new one goes at the end, and everything else in the file stays.

    python -m gpu_workers.bench.report docs/BENCHMARKS.md --engine ENGINE.json \
        --events EVENTS.json --command "make bench"

writes the CPU section from the JSON of `gpu_workers.bench.engine_cpu` and of
`bench.events`. The GPU script writes its own sections with `--write`.
"""

import argparse
import json
import platform
import sys
from pathlib import Path

CPU_SECTION = "cpu"

HEADER = """# Benchmarks

Measured by the scripts in `gpu_workers/bench/` and `bench/` (the web tier's); every
section names its command, machine and date. Re-running a benchmark replaces its section.
Models have random weights: speed does not depend on weight values.
"""


def cpu_model() -> str:
    """The processor's name, for a benchmark's machine line."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_section(path: Path, key: str, markdown: str) -> None:
    """Put `markdown` into the file's section `key`, replacing what was there."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        before, _, rest = text.partition(begin)
        _, _, after = rest.partition(end)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def machine_line(machine: dict) -> str:
    parts = []
    if "gpu" in machine:
        parts.append(f"{machine['gpu']} (CUDA {machine['cuda']})")
    parts.append(
        f"{machine['cpu']}, {machine['cores']} cores ({machine['torch_threads']} torch threads)"
    )
    parts.append(
        f"torch {machine['torch']}, diffusers {machine['diffusers']}, Python {machine['python']}"
    )
    line = "; ".join(parts) + f"; {machine['date']}"
    # The CPU may be shared: a busy machine explains noisy numbers.
    line += f"; load average {machine['load_average']:.1f} at the start"
    if "load_average_after" in machine:
        line += f", {machine['load_average_after']:.1f} at the end"
    return line


def cpu_section(engine: dict, events: dict, command: str) -> str:
    settings = engine["settings"]
    plain, batched = engine["plain"], engine["engine"]
    jobs = settings["jobs"]
    lines = [
        "## CPU: engine on the tiny model, event latency",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_line(engine['machine'])}",
        "",
        f"### Engine vs plain diffusers, {jobs} concurrent jobs",
        "",
        f"{jobs} jobs on the {settings['model']} model (random weights): {settings['width']}x"
        f"{settings['height']}, {settings['steps']} steps, CFG {settings['guidance']:g}, "
        f"{settings['scheduler']}, {settings['dtype']}; different prompts, negative prompts "
        "and seeds. Plain diffusers: the same jobs queued at once and run one at a time "
        "through `StableDiffusionPipeline.__call__`, as a peer UI's queue does, so a job's "
        f"times count from that common submit. Engine: {jobs} threads submit one job each at "
        f"once; max batch {settings['max_batch']}, max wait {settings['max_wait_ms']:g} ms, "
        "previews on. Both warmed up first. First step: submit → the first step callback, "
        "which is what sends the browser its first `job.progress` event.",
        "",
        "| run | images/s | wall (s) | submit → first step p50 / p95 (s) "
        "| submit → image p50 / p95 (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
        cpu_row("plain diffusers, one at a time", plain),
        cpu_row(f"engine, {jobs} concurrent", batched),
        "",
        f"Engine / plain: **{engine['speedup']:.1f}x** images per second. On a CPU shared "
        "with other processes both vary from run to run, plain diffusers most (many small "
        "operations per step, each waiting for both cores): compare runs at similar load.",
        "",
        *arrival_lines(engine),
        *events_lines(events),
    ]
    return "\n".join(lines)


def cpu_row(name: str, numbers: dict) -> str:
    return (
        f"| {name} | {numbers['images_per_s']:.2f} | {numbers['wall_s']:.1f} "
        f"| {numbers['first_step_p50_s']:.2f} / {numbers['first_step_p95_s']:.2f} "
        f"| {numbers['latency_p50_s']:.2f} / {numbers['latency_p95_s']:.2f} |"
    )


ARRIVAL_MODES = {
    "continuous": "continuous batching (joins at the next step)",
    "batch_at_a_time": "batch-at-a-time (no joins while a batch runs)",
}


def arrival_lines(engine: dict) -> list[str]:
    """The arrival-process table: continuous batching vs batch-at-a-time."""
    runs = engine.get("arrivals")
    if not runs:
        return []
    settings = engine["settings"]
    rate = next(iter(runs.values()))["offered_rate_per_s"]
    lines = [
        "### Arrival process: continuous batching vs batch-at-a-time",
        "",
        f"{settings['arrivals']} jobs as above, submitted at Poisson arrival times at "
        f"{rate:.2f} jobs/s ({settings['arrival_load']:.0%} of the engine's images/s above; "
        "the same arrival times for both), each from its own moment, to the engine batching "
        "continuously and to the engine batch-at-a-time "
        f"(`Engine(continuous=False)`: a batch forms once, waiting up to "
        f"{settings['max_wait_ms']:g} ms for companions, and takes no one in while it runs). "
        "Queue time: submit → the job's first step.",
        "",
        "| mode | images/s | submit → first step p50 / p95 (s) | submit → image p50 / p95 (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for mode, numbers in runs.items():
        lines.append(
            f"| {ARRIVAL_MODES.get(mode, mode)} | {numbers['images_per_s']:.2f} "
            f"| {numbers['first_step_p50_s']:.2f} / {numbers['first_step_p95_s']:.2f} "
            f"| {numbers['latency_p50_s']:.2f} / {numbers['latency_p95_s']:.2f} |"
        )
    if {"continuous", "batch_at_a_time"} <= runs.keys():
        ratio = runs["batch_at_a_time"]["latency_p95_s"] / runs["continuous"]["latency_p95_s"]
        lines += [
            "",
            f"p95 latency, batch-at-a-time / continuous: **{ratio:.2f}x**.",
        ]
    return [*lines, ""]


def events_lines(events: dict) -> list[str]:
    lines = [
        "### Event latency, worker → browser socket",
        "",
        f"Channel layer: `{events['layer']}`. {events['mode']} "
        f"{events['sent']} `job.progress` events, one every {events['interval_ms']:g} ms, "
        "published with `studio.realtime.events.publish(group, payload)` to a project's "
        "group and received by a logged-in member's websocket on "
        "`ws/projects/<id>/`; latency from just before `publish` to receipt. Every fourth "
        "carries a 64x64 JPEG preview, as the worker sends about 4 a second (of noise, so "
        "larger than a real one).",
        "",
        "| payload | events received | size (bytes) | p50 (ms) | p95 (ms) | max (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, numbers in events["payloads"].items():
        lines.append(
            f"| {name} | {numbers['received']} of {numbers['sent']} | {numbers['bytes']} "
            f"| {numbers['p50_ms']:.2f} | {numbers['p95_ms']:.2f} | {numbers['max_ms']:.2f} |"
        )
    return [*lines, *event_report_lines(events)]


REPORT_WAYS = {
    "publish": "`publish` per job, in a row",
    "publish_all": "one `publish_all`",
}


def event_report_lines(events: dict) -> list[str]:
    """The progress-report table: a report's events published one by one vs together."""
    reports = events.get("reports")
    if not reports:
        return []
    lines = [
        "",
        "### A progress report of N jobs, worker → browser socket",
        "",
        "A GPU worker's progress report: N `job.progress` events, one per job of the same "
        f"project, each with the preview above ({reports['event_bytes']} bytes an event; "
        "a job sends one about every fourth report, so this is an upper bound), to the same "
        "socket as above. Published either with one `studio.realtime.events.publish` per "
        "job in a row, each waiting for its send, or with one "
        "`studio.realtime.events.publish_all`, which sends the project's group one "
        "channel-layer message carrying them all (what `generation/progress.py` does). "
        "All received: from just before the first publish until the client has the N-th "
        "event; publisher: until the publishing call returns. "
        f"{reports['reports']} reports of each size each way, the two ways alternating, "
        f"{reports['pause_ms']:g} ms apart; complete, in order: every event of the report "
        "arrived, in the order published.",
        "",
        "| jobs | published with | complete, in order | all received p50 / p95 (ms) "
        "| max (ms) | publisher p50 / p95 (ms) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in reports["runs"]:
        lines.append(
            f"| {run['jobs']} | {REPORT_WAYS.get(run['way'], run['way'])} "
            f"| {run['complete_in_order']} of {run['reports']} "
            f"| {run['received_p50_ms']:.2f} / {run['received_p95_ms']:.2f} "
            f"| {run['received_max_ms']:.2f} "
            f"| {run['publisher_p50_ms']:.2f} / {run['publisher_p95_ms']:.2f} |"
        )
    by_way = {(run["jobs"], run["way"]): run for run in reports["runs"]}
    ratios = [
        f"{jobs} jobs **{one_by_one['received_p50_ms'] / together['received_p50_ms']:.1f}x**"
        for (jobs, way), one_by_one in by_way.items()
        if way == "publish" and (together := by_way.get((jobs, "publish_all")))
    ]
    if ratios:
        lines += [
            "",
            "All received p50, `publish` per job / one `publish_all`: "
            + ", ".join(ratios)
            + ".",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the CPU section of BENCHMARKS.md.")
    parser.add_argument("markdown", type=Path, help="e.g. docs/BENCHMARKS.md")
    parser.add_argument("--engine", type=Path, required=True, help="engine_cpu --json output")
    parser.add_argument("--events", type=Path, required=True, help="bench.events --json output")
    parser.add_argument("--command", required=True, help="the command that measured them")
    args = parser.parse_args(argv)
    engine = json.loads(args.engine.read_text(encoding="utf-8"))
    events = json.loads(args.events.read_text(encoding="utf-8"))
    write_section(args.markdown, CPU_SECTION, cpu_section(engine, events, args.command))
    print(f"Wrote the CPU section of {args.markdown}")


if __name__ == "__main__":
    main(sys.argv[1:])
