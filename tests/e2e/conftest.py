"""Real processes: an ASGI server (daphne) and, when REDIS_URL is set, a Celery worker on
the `gpu` queue, all on the test database. Without REDIS_URL the server runs the embedded
worker in-process, exactly as `make run` does."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url():
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for_http(url, process, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{Path(log_path).read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not answer in {timeout}s:\n{Path(log_path).read_text()}")


@pytest.fixture(scope="session")
def studio_processes(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start the server (and worker); yield its base URL and the mode it runs in."""
    logs = tmp_path_factory.mktemp("logs")
    with django_db_blocker.unblock():
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "SECRET_KEY": settings.SECRET_KEY,
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "PYTHONUNBUFFERED": "1",
        }
    port = free_port()
    processes = []
    server_log = logs / "server.log"
    processes.append(
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "studio.asgi:application"],
            cwd=ROOT, env=env, stdout=server_log.open("w"), stderr=subprocess.STDOUT,
        )
    )
    mode = "embedded worker in the server process"
    if settings.REDIS_URL:
        mode = "Celery worker process on Redis"
        # Messages left by an earlier run would name jobs of another test database.
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "studio", "purge", "-f",
             "-Q", "gpu,train,default,moderation"],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )
        worker_log = logs / "worker.log"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "studio", "worker",
                 "-Q", "gpu,train,default,moderation",
                 "--loglevel", "INFO",
                 "--hostname", f"e2e-{port}@%h"],
                cwd=ROOT, env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT,
            )
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base_url + "/login/", processes[0], server_log)
        print(f"\nEnd-to-end: daphne on {base_url}, {mode}, "
              f"database {connection.vendor}", file=sys.stderr)
        yield {"base_url": base_url, "mode": mode, "logs": logs}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
