"""The apps' import layers (pyproject.toml's import-linter contracts; docs/ARCHITECTURE.md):
an import that reaches up a layer, or Django in gpu_workers, fails here."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imports_keep_to_the_layers():
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(linter), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_them(tmp_path):
    """The contracts are checked, not just read: in a copy of the tree, a module of a lower
    layer importing an upper one is reported."""
    for package in ("studio", "generation", "gallery", "gpu_workers"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "generation" / "_layer_probe.py").write_text("import studio.moderation.models\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache",
         str(tmp_path / "pyproject.toml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert "generation._layer_probe -> studio.moderation.models" in result.stdout
