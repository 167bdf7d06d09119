import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from django.conf import settings

# What makes a test slow: a real diffusion run on the tiny models, or real processes.
SLOW_FIXTURES = {
    "tiny_model_dir", "tiny_sdxl_model_dir", "tiny_flux", "tiny_flux_fill", "tiny_flux_control",
    "tiny_sd3", "flow_job",
}
SLOW_MARKERS = ("e2e", "browser", "faults")
# The server and worker processes that live from the first test using them to the session's
# end (tests/e2e/conftest.py).
SESSION_PROCESSES_FIXTURE = "studio_processes"


def pytest_collection_modifyitems(items):
    """Mark `slow` what runs the tiny models or real processes, so `make test-fast` (`-m "not
    slow"`) leaves it out without anyone having to remember the marker.

    The tests on the session's server and worker processes (tests/e2e) run last: that
    worker consumes the test broker's queues against the test database until the session
    ends, so any later test that committed a job or an image and sent its task would have
    it run there, in the middle of its own work (a CI run deadlocked in a flush so)."""
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or any(
            item.get_closest_marker(name) for name in SLOW_MARKERS
        ):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: SESSION_PROCESSES_FIXTURE in item.fixturenames)  # stable


@pytest.fixture(scope="session", autouse=True)
def remove_test_media():
    yield
    media = Path(settings.MEDIA_ROOT)
    if media.parent == Path(tempfile.gettempdir()) and media.name.startswith("studio-test-media-"):
        shutil.rmtree(media, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Rate limits and log-in failures count in the cache: each test starts at zero."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def steady_rate_limit_windows():
    """django-ratelimit counts in fixed windows: a test crossing a window's end on a slow
    machine would see its count start again. Its clock stands still during each test."""
    now = time.time()
    with mock.patch("django_ratelimit.core.time", SimpleNamespace(time=lambda: now)):
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny random-weight SD1.5-architecture model, built once per test run."""
    from gpu_workers.tiny_models import build_tiny_sd15

    return build_tiny_sd15(tmp_path_factory.mktemp("models") / "tiny-sd15")


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory):
    """The tiny FLUX.1 [dev]-architecture folder shared by the whole test run."""
    from gpu_workers.tiny_models import build_tiny_flux

    return build_tiny_flux(tmp_path_factory.mktemp("models") / "tiny-flux1")


@pytest.fixture(scope="session")
def tiny_flux_fill(tmp_path_factory):
    """The tiny FLUX.1 Fill folder (a 384-channel transformer) shared by the test run."""
    from gpu_workers.tiny_models import build_tiny_flux_fill

    return build_tiny_flux_fill(tmp_path_factory.mktemp("models") / "tiny-flux1-fill")


@pytest.fixture(scope="session")
def tiny_flux_control(tmp_path_factory):
    """The tiny FLUX.1 Depth / Canny folder (a 128-channel transformer) shared by the test
    run."""
    from gpu_workers.tiny_models import build_tiny_flux_control

    return build_tiny_flux_control(tmp_path_factory.mktemp("models") / "tiny-flux1-control")


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory):
    """The tiny Stable Diffusion 3.x-architecture folder shared by the whole test run."""
    from gpu_workers.tiny_models import build_tiny_sd3

    return build_tiny_sd3(tmp_path_factory.mktemp("models") / "tiny-sd3")


@pytest.fixture(scope="session")
def tiny_sdxl_model_dir(tmp_path_factory):
    """The tiny random-weight SDXL-architecture model, built once per test run."""
    from gpu_workers.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")
