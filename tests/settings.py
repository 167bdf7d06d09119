"""Settings for the test suite: the real settings, with test defaults for what the
environment does not set (plain HTTP, a throwaway key, media in a temporary folder)."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "t" * 40)
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
# Every step reports, so tests can act at a given step (tests/generation/test_job_execution.py
# checks the throttle itself).
os.environ.setdefault("STUDIO_PROGRESS_INTERVAL_S", "0")
# Workers in tests (and the servers they start) cache LoRA files here, not in the home folder.
os.environ.setdefault(
    "STUDIO_LORA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "studio-test-lora-cache")
)
if "MEDIA_ROOT" not in os.environ:
    # Removed at the end of the run by tests/conftest.py; server processes inherit it.
    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="studio-test-media-")

from studio.settings import *  # noqa: E402, F403

WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: end-to-end tests start server processes that share it. One per
    # test run, so that two runs on one machine don't write into each other's database.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")  # noqa: F405
    }

# Rate-limit and log-in counters stay in this process, cleared before each test
# (tests/conftest.py): a test never meets another's counts, nor flushes a shared Redis.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
