"""The web tier's benchmarks live in the top-level `bench/` package, which no web node or
worker imports and the wheel does not ship; each still starts from its command line."""

import ast
import importlib
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("studio", "generation", "gallery", "gpu_workers")
# bench.load_users is a locustfile: importing it loads locust, which monkey-patches the
# standard library for gevent. bench.load starts it in a process of its own.
BENCHMARKS = ("api", "events", "faults", "gallery", "load", "policy", "uploads")


def imported_names(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_runtime_packages_never_import_bench():
    for package in RUNTIME_PACKAGES:
        for module in (ROOT / package).rglob("*.py"):
            names = [name for name in imported_names(module) if name.split(".")[0] == "bench"]
            assert not names, f"{module.relative_to(ROOT)} imports {names}"


def test_benchmarks_live_outside_the_runtime_packages():
    # gpu_workers/bench stays: the engine's benchmarks, Django-free, run on workers.
    strays = [
        str(path.relative_to(ROOT))
        for package in RUNTIME_PACKAGES
        for path in (ROOT / package).rglob("*bench*")
        if path.relative_to(ROOT).parts[:2] != ("gpu_workers", "bench")
    ]
    assert strays == []


def test_the_wheel_ships_no_bench_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    find = config["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ()))
    assert "gallery" in packages and "gpu_workers.bench" in packages
    assert not [name for name in packages if name.split(".")[0] in ("bench", "tests")]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_answers_help(name, capsys):
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    assert "--help" in capsys.readouterr().out


def test_event_benchmark_refuses_no_events(capsys):
    from bench import events

    with pytest.raises(SystemExit) as exit_:
        events.main(["--events", "0"])
    assert exit_.value.code == 2
    assert "--events must be at least 1" in capsys.readouterr().err
