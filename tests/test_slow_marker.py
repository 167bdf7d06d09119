"""`make test-fast` leaves out what runs the tiny models or real processes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(*args):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_tiny_model_runs_and_processes_are_slow():
    fast = collected("-m", "not slow", "tests/test_job_execution.py", "tests/e2e",
                     "tests/test_recipe.py")
    assert fast, "the fast selection is empty"
    assert all(test.startswith("tests/test_recipe.py") for test in fast), fast
    slow = collected("-m", "slow", "tests/test_job_execution.py", "tests/test_recipe.py")
    assert slow and all(test.startswith("tests/test_job_execution.py") for test in slow)
