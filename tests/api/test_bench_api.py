"""bench/api.py (make bench-api) at tiny sizes: it answers --help, refuses sizes it can't
use, and, where a PostgreSQL server is reachable, runs end to end in a process of its own
(it sets up Django on its throwaway database) and writes its section."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import api

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def postgres_reachable():
    import psycopg

    try:
        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def test_answers_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        api.main(["--help"])
    assert exit_.value.code == 0
    assert "--threads" in capsys.readouterr().out


def test_refuses_no_requests(capsys):
    with pytest.raises(SystemExit) as exit_:
        api.main(["--requests", "0"])
    assert exit_.value.code == 2
    assert "--requests and --threads must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_run_writes_its_section(tmp_path):
    if not postgres_reachable():
        pytest.skip(f"no PostgreSQL server at {POSTGRES}")
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\n<!-- bench:other -->\nkept\n<!-- /bench:other -->\n")
    env = {**os.environ, "BENCH_POSTGRES_URL": POSTGRES}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run = subprocess.run(
        [sys.executable, "-m", "bench.api", "--requests", "3", "--warmup", "1", "--threads",
         "2", "--write", str(report), "--command", "smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = report.read_text()
    assert "kept" in text
    section = text.split(f"<!-- bench:{api.SECTION} -->")[1]
    assert "| request → job queued |" in section
    assert "jobs/s" in section and "Command: `smoke`" in section
