"""What /readyz checks: can this process reach what it needs to serve requests?

Each check returns None when it passed, else a short reason for the JSON body; the error
itself goes to the log only (the body is public: load balancers read it).
"""

import logging
import uuid

import redis
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2


def database_check():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.exception("Readiness: the database is unreachable")
        return "unreachable"
    return None


def redis_check():
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=PROBE_TIMEOUT_S,
        socket_timeout=PROBE_TIMEOUT_S,
    )
    try:
        client.ping()
    except redis.RedisError:
        logger.exception("Readiness: Redis is unreachable")
        return "unreachable"
    finally:
        client.close()
    return None


def storage_check():
    """Writes and deletes a tiny file: reading alone would pass on a read-only mount."""
    try:
        name = default_storage.save(f"readyz/{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
        default_storage.delete(name)
    except Exception:
        logger.exception("Readiness: media storage is not writable")
        return "not writable"
    return None


def readiness_checks():
    """{check name: None or the reason it failed}; Redis only where REDIS_URL is set."""
    checks = {"database": database_check}
    if settings.REDIS_URL:
        checks["redis"] = redis_check
    checks["storage"] = storage_check
    return {name: check() for name, check in checks.items()}
