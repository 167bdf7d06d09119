import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE_SSL_REDIRECT",
             "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_production_values():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY="k3y-" + "q8Zr!v2$Lm9#xT4p" * 4,
        ALLOWED_HOSTS="studio.example.com",
        DEBUG="0",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", SECRET_KEY="", DEBUG="0")
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr
