"""A real full disk for tests: a small tmpfs mounted for the test. Mounting needs root (as
in CI's container); where it is refused, the tests that need it are skipped, saying why."""

import shutil
import subprocess

import pytest


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted after the test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )
    if mounted.returncode:
        pytest.skip(f"a tmpfs can't be mounted here ({mounted.stderr.strip()}): run as root")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def disk_fill(disk, *, leave):
    """Fill `disk` until about `leave` bytes are free (tmpfs counts whole pages)."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(bytes(max(0, free - leave)))


def files_under(folder, *, besides=("filler",)):
    """Every file under `folder` (hidden temporary ones too), by path relative to it."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and path.name not in besides
    )
