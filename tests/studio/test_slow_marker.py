"""`make test-fast` leaves out what runs the tiny models or real processes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collected(*args):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_tiny_model_runs_and_processes_are_slow():
    runs, recipe = "tests/generation/test_job_execution.py", "tests/generation/test_recipe.py"
    fast = collected("-m", "not slow", runs, "tests/e2e", recipe)
    assert fast, "the fast selection is empty"
    assert all(test.startswith(recipe) for test in fast), fast
    slow = collected("-m", "slow", runs, recipe)
    assert slow and all(test.startswith(runs) for test in slow)
