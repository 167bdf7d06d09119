"""/healthz says the process is up; /readyz whether the database, Redis and storage are."""

import os
import tempfile
from unittest import mock

from django.db import OperationalError, connection
from django.test import TestCase, override_settings

from tests.base import StudioTestCase


class HealthzTests(TestCase):
    def test_up_without_touching_the_database(self):
        with self.assertNumQueries(0):
            response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok"})

    def test_answers_over_plain_http_when_https_is_enforced(self):
        with override_settings(SECURE_SSL_REDIRECT=True):
            self.assertEqual(self.client.get("/healthz").status_code, 200)
            self.assertEqual(self.client.get("/readyz").status_code, 200)
            # Pages still redirect: the exemption is for the probes only.
            self.assertEqual(self.client.get("/login/").status_code, 301)

    def test_only_get(self):
        self.assertEqual(self.client.post("/healthz").status_code, 405)


@override_settings(REDIS_URL="")
class ReadyzTests(StudioTestCase):
    def test_ready_names_each_check(self):
        response = self.client.get("/readyz")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response.json(),
            {"status": "ok", "checks": {"database": "ok", "storage": "ok"}},
        )

    def test_leaves_no_probe_file(self):
        self.client.get("/readyz")
        from django.conf import settings

        probes = os.path.join(settings.MEDIA_ROOT, "readyz")
        self.assertEqual(os.listdir(probes) if os.path.isdir(probes) else [], [])

    def test_database_unreachable_is_503(self):
        with (
            mock.patch.object(connection, "cursor", side_effect=OperationalError("gone")),
            self.assertLogs("studio.ops.readiness", "ERROR"),
        ):
            response = self.client.get("/readyz")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(
            response.json(),
            {"status": "unavailable", "checks": {"database": "unreachable", "storage": "ok"}},
        )

    def test_storage_unwritable_is_503(self):
        # MEDIA_ROOT under a plain file: no folder can be made there.
        blocker = os.path.join(self.enterContext(tempfile.TemporaryDirectory()), "a-file")
        open(blocker, "w").close()
        with (
            override_settings(MEDIA_ROOT=os.path.join(blocker, "media")),
            self.assertLogs("studio.ops.readiness", "ERROR"),
        ):
            response = self.client.get("/readyz")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["checks"], {"database": "ok", "storage": "not writable"})

    def test_redis_unreachable_is_503(self):
        # Port 9 (discard) has no Redis listening.
        with (
            override_settings(REDIS_URL="redis://127.0.0.1:9/0"),
            self.assertLogs("studio.ops.readiness", "ERROR"),
        ):
            response = self.client.get("/readyz")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(
            response.json()["checks"],
            {"database": "ok", "redis": "unreachable", "storage": "ok"},
        )

    def test_redis_reachable(self):
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            self.skipTest("REDIS_URL is not set")
        with override_settings(REDIS_URL=redis_url):
            response = self.client.get("/readyz")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["checks"]["redis"], "ok")

    def test_signed_in_users_get_the_same_answer(self):
        # Public to probes; nothing in it depends on or reveals who asks.
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get("/readyz").json()["status"], "ok")
