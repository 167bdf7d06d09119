"""Fixtures of the fault-injection suite: a throwaway PostgreSQL cluster for the package
(one migrated template database, copied for each test), and per test a throwaway Redis,
a media folder and real Celery processes on them. The test process itself reads and
writes the test's database and sends to its Redis, so `job_create` dispatches as a web
node does."""

import itertools
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.utils import load_backend
from django.test import override_settings

from tests.faults.services import (
    CeleryProcesses,
    PostgresServer,
    RedisServer,
    missing_binaries,
)

TEMPLATE_DATABASE = "studio_template"
# Workers as a deployment would run them, but with a lease short enough for a test: a
# killed worker's job is taken over seconds after its last step. More attempts than any
# test kills workers: then every job must finish, none may fail.
LEASE_S = 5
WORKER_ENV = {"STUDIO_JOB_LEASE_S": str(LEASE_S), "STUDIO_JOB_MAX_ATTEMPTS": "10"}
_database_numbers = itertools.count(1)


@contextmanager
def django_database(url):
    """Point Django's default connection at `url` (another server, perhaps another engine)
    and back: the session's own test database is left as it was."""
    import dj_database_url

    settings_dict = connections.configure_settings({"default": dj_database_url.parse(url)})
    wrapper = load_backend(settings_dict["default"]["ENGINE"]).DatabaseWrapper(
        settings_dict["default"], "default"
    )
    previous = connections["default"]
    connections["default"] = wrapper
    try:
        yield wrapper
    finally:
        wrapper.close()
        connections["default"] = previous


@contextmanager
def celery_broker(url):
    """Send this process' Celery messages to `url`. Celery caches its connection and
    producer pools on first use, so they are dropped on the way in and out."""
    from studio.celery import app

    def drop_pools():
        app._pool = None
        app.amqp._producer_pool = None

    previous = app.conf.broker_url
    app.conf.broker_url = url
    drop_pools()
    try:
        with override_settings(CELERY_BROKER_URL=url, REDIS_URL=url):
            yield app
    finally:
        app.conf.broker_url = previous
        drop_pools()


@pytest.fixture(scope="package")
def fault_postgres(django_db_blocker):
    missing = missing_binaries()
    if missing:
        pytest.skip("fault injection needs " + ", ".join(missing))
    server = PostgresServer()
    try:
        server.start()
        server.create_database(TEMPLATE_DATABASE)
        with django_db_blocker.unblock(), django_database(server.url(TEMPLATE_DATABASE)):
            call_command("migrate", verbosity=0, interactive=False)
        yield server
    finally:
        server.destroy()


class FaultRun:
    """One scenario's services and processes."""

    def __init__(self, *, postgres, redis, media_root, celery):
        self.postgres = postgres
        self.redis = redis
        self.media_root = media_root
        self.celery = celery


@pytest.fixture
def fault_run(fault_postgres, django_db_blocker, request):
    """Fresh database (from the template), Redis and media folder; the test starts the
    Celery processes it needs (`run.celery`). Their logs are kept when the test fails."""
    if not fault_postgres.is_running():
        fault_postgres.start()  # an earlier test failed while it was down
    database = f"studio_{next(_database_numbers)}"
    fault_postgres.create_database(database, template=TEMPLATE_DATABASE)
    redis = RedisServer()
    media_root = Path(tempfile.mkdtemp(prefix="studio-faults-media-"))
    logs = Path(tempfile.mkdtemp(prefix="studio-faults-logs-"))
    print(f"Celery logs of {request.node.name}: {logs}")
    failed_before = request.session.testsfailed
    celery = CeleryProcesses(
        database_url=fault_postgres.url(database),
        redis_url=redis.url(),
        media_root=media_root,
        logs=logs,
        env=WORKER_ENV,
    )
    try:
        redis.start()
        with (
            django_db_blocker.unblock(),
            django_database(fault_postgres.url(database)),
            celery_broker(redis.url()),
            override_settings(MEDIA_ROOT=media_root),
        ):
            yield FaultRun(
                postgres=fault_postgres, redis=redis, media_root=media_root, celery=celery,
            )
    finally:
        celery.stop_all()
        redis.destroy()
        shutil.rmtree(media_root, ignore_errors=True)
        if request.session.testsfailed == failed_before:
            shutil.rmtree(logs, ignore_errors=True)
