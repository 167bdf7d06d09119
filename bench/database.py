"""The web benchmarks' throwaway PostgreSQL database, and Django set up on it as in
production (DEBUG off, so no query log; no Redis: the in-memory channel layer and cache)."""

import os
import platform
import secrets
from datetime import UTC, datetime

from gpu_workers.bench.report import cpu_model


def admin_connection(server):
    import psycopg

    return psycopg.connect(f"{server}/postgres", autocommit=True)


def create_database(server, name):
    with admin_connection(server) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def drop_database(server, name):
    with admin_connection(server) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def setup_django(server, name, media_root, **environ):
    """Django on database `name`, migrated; `environ`: more settings (e.g. limits)."""
    os.environ.update(
        DATABASE_URL=f"{server}/{name}",
        DJANGO_SETTINGS_MODULE="studio.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        ALLOWED_HOSTS="testserver",
        MEDIA_ROOT=str(media_root),
        LOG_LEVEL="WARNING",
        **environ,
    )
    for variable in ("REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(variable, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def machine():
    """The machine and the versions a PostgreSQL benchmark ran on (of the database that
    setup_django connected to), and the load average as it starts."""
    from django import get_version
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "postgres": postgres.split()[0],
        "python": platform.python_version(), "django": get_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": os.getloadavg()[0],
    }
