"""The benchmarks run and report sensible numbers, at their smallest settings.

Timings on a shared CPU vary too much to assert on; structure and signs do not.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.db import connection

from gpu_workers.bench import engine_cpu, gpu, report

ROOT = Path(__file__).resolve().parents[2]
TIMING_KEYS = (
    "wall_s",
    "images_per_s",
    "latency_p50_s",
    "latency_p95_s",
    "first_step_p50_s",
    "first_step_p95_s",
)


def assert_sensible_timings(numbers, jobs):
    assert numbers["jobs"] == jobs
    assert all(numbers[key] > 0 for key in TIMING_KEYS)
    assert numbers["latency_p50_s"] <= numbers["latency_p95_s"]
    assert numbers["first_step_p50_s"] <= numbers["first_step_p95_s"]
    # A job's first step ends before its image does.
    assert numbers["first_step_p50_s"] < numbers["latency_p95_s"]


@pytest.fixture(scope="module")
def engine_results(tiny_sd15):
    return engine_cpu.run(model_dir=tiny_sd15, jobs=3, size=64, steps=2, max_batch=3, arrivals=4)


def test_engine_cpu_bench_compares_the_engine_with_plain_diffusers(engine_results):
    assert_sensible_timings(engine_results["plain"], jobs=3)
    assert_sensible_timings(engine_results["engine"], jobs=3)
    assert engine_results["speedup"] == pytest.approx(
        engine_results["engine"]["images_per_s"] / engine_results["plain"]["images_per_s"]
    )
    assert engine_results["settings"]["width"] == 64
    machine = engine_results["machine"]
    assert machine["cores"] >= 1 and machine["torch"] and machine["cpu"]


def test_engine_cpu_bench_runs_the_arrival_process_both_ways(engine_results):
    runs = engine_results["arrivals"]
    assert runs.keys() == {"continuous", "batch_at_a_time"}
    rate = engine_cpu.ARRIVAL_LOAD * engine_results["engine"]["images_per_s"]
    for numbers in runs.values():
        assert_sensible_timings(numbers, jobs=4)
        assert numbers["offered_rate_per_s"] == pytest.approx(rate)


def test_gpu_script_runs_on_the_cpu_with_tiny_configs(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    results = gpu.main(
        ["--device", "cpu", "--tiny", "--steps", "2", "--jobs", "1", "--rounds", "1"]
        + ["--concurrency", "1", "2", "--arrivals", "3", "--buckets", "1,2,4"]
        + ["--write", str(markdown), "--json", str(tmp_path / "r.json")]
    )
    assert results["matmul_flops_per_s"] > 0
    assert json.loads((tmp_path / "r.json").read_text())["archs"].keys() == {"sd15", "sdxl"}

    # Both architectures: plain diffusers, then the engine at each concurrency.
    for arch in results["archs"].values():
        assert arch["flops_per_image"] > 0 and arch["floor_s_per_image"] > 0
        assert [(run["runner"], run["concurrency"]) for run in arch["runs"]] == [
            ("plain diffusers", 1),
            ("engine", 1),
            ("engine", 2),
        ]
        for run in arch["runs"]:
            assert_sensible_timings(run, jobs=run["jobs"])
            assert run["vs_floor"] > 0 and run["vs_plain"] > 0
        assert arch["runs"][0]["vs_plain"] == 1
        # Then the arrival process, both ways, at one rate.
        assert [run["runner"] for run in arch["arrivals"]] == [
            "engine, arrivals, continuous",
            "engine, arrivals, batch-at-a-time",
        ]
        for run in arch["arrivals"]:
            assert_sensible_timings(run, jobs=3)
        assert len({run["offered_rate_per_s"] for run in arch["arrivals"]}) == 1
        # The engine's warm-up of its batch buckets at preload, measured.
        assert arch["warmup_s"]["off"] > 0
    sd15, sdxl = results["archs"]["sd15"], results["archs"]["sdxl"]
    assert sdxl["flops_per_image"] > sd15["flops_per_image"]
    assert "text_encoder_2" in sdxl["params"]

    text = markdown.read_text()
    assert "<!-- bench:gpu-sd15-tiny -->" in text and "<!-- bench:gpu-sdxl-tiny -->" in text
    assert "python -m gpu_workers.bench.gpu --device cpu --tiny" in text
    assert text.count("Machine: ") == 2
    assert text.count("| continuous | off |") == 2
    assert text.count("Engine warm-up at preload") == 2


def test_gpu_script_quick_profile_is_sd15_at_fewer_jobs():
    args = gpu.parse_args(["--device", "cpu", "--quick", "--jobs", "2"])
    assert (args.arch, args.concurrency, args.rounds, args.arrivals) == (["sd15"], [1, 8], 1, 16)
    assert args.jobs == 2  # an option given still applies


def test_write_section_replaces_its_section_and_keeps_the_rest(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    report.write_section(path, "cpu", "## CPU\n\nold numbers")
    report.write_section(path, "gpu-sd15", "## GPU\n\nsd15 numbers")
    path.write_text(path.read_text() + "\nA note someone wrote by hand.\n")

    report.write_section(path, "cpu", "## CPU\n\nnew numbers")

    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert "new numbers" in text and "old numbers" not in text
    assert text.count("<!-- bench:cpu -->") == 1
    assert "sd15 numbers" in text and "A note someone wrote by hand." in text
    assert text.index("new numbers") < text.index("sd15 numbers")


def test_report_writes_the_cpu_section_from_the_json_files(engine_results, tmp_path):
    events = {
        "layer": "channels.layers.InMemoryChannelLayer",
        "mode": "In one process.",
        "database": "sqlite",
        "sent": 4,
        "interval_ms": 5,
        "payloads": {
            "job.progress": {
                "sent": 4,
                "received": 4,
                "bytes": 130,
                "p50_ms": 1.0,
                "p95_ms": 2.0,
                "max_ms": 3.0,
            }
        },
        "reports": {
            "reports": 5,
            "pause_ms": 20,
            "event_bytes": 4014,
            "runs": [
                report_run(jobs=8, way="publish", complete=5, received_p50_ms=12.0),
                report_run(jobs=8, way="publish_all", complete=5, received_p50_ms=3.0),
                report_run(jobs=32, way="publish", complete=4, received_p50_ms=50.0),
                report_run(jobs=32, way="publish_all", complete=5, received_p50_ms=5.0),
            ],
        },
    }
    (tmp_path / "engine.json").write_text(json.dumps(engine_results))
    (tmp_path / "events.json").write_text(json.dumps(events))
    markdown = tmp_path / "BENCHMARKS.md"
    args = ["--engine", str(tmp_path / "engine.json"), "--events", str(tmp_path / "events.json")]

    report.main([str(markdown), *args, "--command", "make bench"])
    report.main([str(markdown), *args, "--command", "make bench"])

    text = markdown.read_text()
    assert text.count("<!-- bench:cpu -->") == 1
    assert "Command: `make bench`" in text
    assert "| engine, 3 concurrent |" in text
    assert "4 jobs as above, submitted at Poisson arrival times" in text
    assert "| continuous batching (joins at the next step) |" in text
    assert "p95 latency, batch-at-a-time / continuous: **" in text
    assert "InMemoryChannelLayer" in text and "| job.progress | 4 of 4 |" in text
    assert "### A progress report of N jobs, worker → browser socket" in text
    assert "4014 bytes an event" in text and "5 reports of each size each way" in text
    row = "| 8 | `publish` per job, in a row | 5 of 5 | 12.00 / 13.00 | 14.00 | 1.00 / 2.00 |"
    assert row in text
    assert "| 32 | one `publish_all` | 5 of 5 | 5.00 / 6.00 | 7.00 | 1.00 / 2.00 |" in text
    assert "| 32 | `publish` per job, in a row | 4 of 5 |" in text
    assert "one `publish_all`: 8 jobs **4.0x**, 32 jobs **10.0x**." in text


def report_run(*, jobs, way, complete, received_p50_ms):
    """A run of bench.events' "reports", its other times following from received_p50_ms."""
    return {
        "jobs": jobs,
        "way": way,
        "reports": 5,
        "complete_in_order": complete,
        "received_p50_ms": received_p50_ms,
        "received_p95_ms": received_p50_ms + 1,
        "received_max_ms": received_p50_ms + 2,
        "publisher_p50_ms": 1.0,
        "publisher_p95_ms": 2.0,
    }


def test_report_leaves_out_the_progress_report_table_of_events_without_it():
    events = {
        "layer": "channels.layers.InMemoryChannelLayer",
        "mode": "In one process.",
        "sent": 4,
        "interval_ms": 5,
        "payloads": {},
    }
    text = "\n".join(report.events_lines(events))
    assert "### Event latency, worker → browser socket" in text
    assert "progress report" not in text


def test_bench_package_never_imports_django():
    # Checked on the source: importing the modules takes torch and diffusers seconds, and
    # what they import from gpu_workers is checked Django-free by test_package.py.
    for module in (ROOT / "gpu_workers" / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "django" for name in names), module.name


@pytest.mark.django_db(transaction=True)
def test_bench_events_times_publish_to_a_logged_in_socket(tmp_path):
    out = tmp_path / "events.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.events",
            "--events",
            "8",
            "--reports",
            "2",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )

    results = json.loads(out.read_text())
    expected_layer = "RedisChannelLayer" if settings.REDIS_URL else "InMemoryChannelLayer"
    assert results["layer"].endswith(expected_layer)
    payloads = results["payloads"]
    assert payloads.keys() == {"job.progress", "job.progress + preview"}
    assert sum(numbers["sent"] for numbers in payloads.values()) == 8
    for numbers in payloads.values():
        assert numbers["received"] == numbers["sent"]
        assert 0 < numbers["p50_ms"] <= numbers["p95_ms"] <= numbers["max_ms"]
    assert payloads["job.progress + preview"]["bytes"] > payloads["job.progress"]["bytes"]

    reports = results["reports"]
    assert reports["reports"] == 2
    assert reports["event_bytes"] > payloads["job.progress + preview"]["bytes"]
    runs = {(run["jobs"], run["way"]): run for run in reports["runs"]}
    assert runs.keys() == {(8, "publish"), (8, "publish_all"), (32, "publish"), (32, "publish_all")}
    for run in runs.values():
        # Every event of every report arrived, in the order published.
        assert run["reports"] == run["complete_in_order"] == 2
        assert 0 < run["received_p50_ms"] <= run["received_p95_ms"] <= run["received_max_ms"]
        assert 0 < run["publisher_p50_ms"] <= run["publisher_p95_ms"]


def _test_database_url():
    """The test database, for the command's process (as the end-to-end tests do)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_the_families_bench_compares_each_flow_family_with_its_pipeline(tmp_path):
    from gpu_workers.bench import families_cpu

    results = families_cpu.run(jobs=2, size=64, steps=2, max_batch=2)

    assert results["families"].keys() == {"FLUX.1", "SD 3.x"}
    for numbers in results["families"].values():
        assert_sensible_timings(numbers["plain"], jobs=2)
        assert_sensible_timings(numbers["engine"], jobs=2)
    assert results["families"]["FLUX.1"]["pipeline"] == "FluxPipeline"
    markdown = tmp_path / "BENCHMARKS.md"
    report.write_section(markdown, families_cpu.SECTION, families_cpu.section(results, "cmd"))
    text = markdown.read_text()
    assert "| FLUX.1 | plain `FluxPipeline` |" in text
    assert "| SD 3.x | engine, 2 concurrent |" in text
    assert "<!-- /bench:families-cpu -->" in text


def test_gpu_script_has_flux_and_sd35_profiles_run_on_their_own(tmp_path):
    assert gpu.parse_args(["--device", "cpu"]).arch == ["sd15", "sdxl"]
    results = gpu.main(
        ["--device", "cpu", "--tiny", "--arch", "flux", "sd35", "--steps", "2", "--jobs", "1"]
        + ["--rounds", "1", "--concurrency", "1", "2", "--arrivals", "0"]
        + ["--write", str(tmp_path / "BENCHMARKS.md")]
    )

    flux, sd35 = results["archs"]["flux"], results["archs"]["sd35"]
    assert (flux["rows_per_job"], flux["guidance_kind"]) == (1, "distilled guidance")
    assert (sd35["rows_per_job"], sd35["guidance_kind"]) == (2, "CFG")
    assert flux["scheduler"] == sd35["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert "text_encoder_3" in sd35["params"]
    for arch in (flux, sd35):
        for run in arch["runs"]:
            assert_sensible_timings(run, jobs=run["jobs"])
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- bench:gpu-flux-tiny -->" in text and "<!-- bench:gpu-sd35-tiny -->" in text
    assert "distilled guidance 3.5" in text and "at 1 rows per job" in text


def test_the_real_size_flow_profiles_have_the_released_models_sizes():
    """Built on the meta device: no memory, only the parameter counts."""
    import tempfile

    counts = {}
    for key in ("flux", "sd35"):
        with tempfile.TemporaryDirectory() as scratch:
            pipe = gpu.build_flow_pipeline(
                gpu.ARCHS[key]["full"], device="meta", dtype=torch.bfloat16, scratch=Path(scratch)
            )
        counts[key] = {
            name: sum(p.numel() for p in module.parameters())
            for name, module in pipe.components.items()
            if isinstance(module, torch.nn.Module)
        }
    # FLUX.1 [dev] 11.9 G and SD 3.5 Large 8.1 G transformer parameters; T5 XXL 4.76 G.
    assert round(counts["flux"]["transformer"] / 1e9, 1) == 11.9
    assert round(counts["sd35"]["transformer"] / 1e9, 1) == 8.1
    assert round(counts["flux"]["text_encoder_2"] / 1e9, 2) == 4.76
