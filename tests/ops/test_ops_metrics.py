"""/metrics: Prometheus' text for allowed addresses only, with request latency, the
sweeper's actions, and gauges read from the database (and the broker) at each scrape."""

import ipaddress
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from unittest import mock

from celery.signals import worker_ready
from django.conf import settings
from django.db import OperationalError, connection
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from generation.models import JobStatus
from studio.ops.metrics import SWEEPER_ACTIONS
from studio.ops.signals import worker_metrics_serve
from tests.base import StudioTestCase, make_job


def samples(response):
    """{(name, frozenset(labels)): value} of a /metrics body."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@override_settings(REDIS_URL="")
class MetricsAccessTests(StudioTestCase):
    def test_loopback_may_read(self):
        response = self.client.get("/metrics")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response["Content-Type"].startswith("text/plain; version="))

    def test_other_addresses_get_404_whoever_asks(self):
        self.outsider.is_superuser = self.outsider.is_staff = True
        self.outsider.save()
        for user in (None, self.editor, self.outsider):
            with self.subTest(user=user):
                self.client.logout()
                if user is not None:
                    self.client.force_login(user)
                response = self.client.get("/metrics", REMOTE_ADDR="203.0.113.9")
                self.assertEqual(response.status_code, 404)
                self.assertNotIn(b"studio_jobs", response.content)

    def test_a_forwarded_for_header_does_not_open_it(self):
        response = self.client.get(
            "/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1"
        )
        self.assertEqual(response.status_code, 404)

    def test_allowed_networks(self):
        networks = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
        with override_settings(STUDIO_METRICS_ALLOWED_NETWORKS=networks):
            self.assertEqual(self.client.get("/metrics", REMOTE_ADDR="10.4.5.6").status_code, 200)
            self.assertEqual(
                self.client.get("/metrics", REMOTE_ADDR="2001:db8::7").status_code, 200
            )
            self.assertEqual(self.client.get("/metrics").status_code, 404)  # 127.0.0.1


@override_settings(REDIS_URL="")
class MetricsContentTests(StudioTestCase):
    def test_jobs_by_state_and_queued_per_team(self):
        make_job(self.project, self.editor, self.model)
        make_job(self.project, self.owner, self.model)
        make_job(self.project, self.owner, self.model, status=JobStatus.FAILED)
        make_job(self.other_project, self.outsider, self.model)
        found = samples(self.client.get("/metrics"))
        self.assertEqual(found[("studio_jobs", frozenset({("state", "queued")}))], 3)
        self.assertEqual(found[("studio_jobs", frozenset({("state", "failed")}))], 1)
        self.assertEqual(found[("studio_jobs", frozenset({("state", "running")}))], 0)
        self.assertEqual(found[("studio_training_runs", frozenset({("state", "queued")}))], 0)
        alpha = frozenset({("team_id", str(self.team.pk)), ("team", "Alpha")})
        elsewhere = frozenset({("team_id", str(self.other_team.pk)), ("team", "Elsewhere")})
        self.assertEqual(found[("studio_queued_jobs", alpha)], 2)
        self.assertEqual(found[("studio_queued_jobs", elsewhere)], 1)

    def test_request_latency_by_route(self):
        self.client.get("/healthz")
        found = samples(self.client.get("/metrics"))
        labels = frozenset({("method", "GET"), ("route", "healthz"), ("status", "2xx")})
        self.assertGreaterEqual(found[("studio_http_request_duration_seconds_count", labels)], 1)

    def test_paths_with_ids_share_their_route(self):
        self.client.force_login(self.editor)
        self.client.get(f"/projects/{self.project.pk}/")
        self.client.get("/no/such/page/")
        found = samples(self.client.get("/metrics"))
        routes = {
            dict(labels)["route"]
            for name, labels in found
            if name == "studio_http_request_duration_seconds_count"
        }
        self.assertIn("<unmatched>", routes)
        self.assertIn("projects/<int:project_id>/", routes)
        # No route holds the id as a path segment (routes such as api/v1/ hold digits).
        with_id = [route for route in routes if f"/{self.project.pk}/" in f"/{route}"]
        self.assertFalse(with_id, routes)

    def test_sweeper_actions(self):
        SWEEPER_ACTIONS.labels(action="requeued").inc()
        found = samples(self.client.get("/metrics"))
        self.assertGreaterEqual(
            found[("studio_sweeper_actions_total", frozenset({("action", "requeued")}))], 1
        )

    def test_an_unreachable_database_is_reported_not_a_500(self):
        with (
            mock.patch.object(connection, "cursor", side_effect=OperationalError("gone")),
            self.assertLogs("studio.ops.collectors", "ERROR"),
        ):
            response = self.client.get("/metrics")
        self.assertEqual(response.status_code, 200)
        found = samples(response)
        self.assertEqual(found[("studio_database_up", frozenset())], 0)
        self.assertNotIn(("studio_jobs", frozenset({("state", "queued")})), found)
        again = samples(self.client.get("/metrics"))
        self.assertEqual(again[("studio_database_up", frozenset())], 1)

    def test_no_broker_metrics_in_embedded_mode(self):
        names = {name for name, _ in samples(self.client.get("/metrics"))}
        self.assertNotIn("studio_broker_up", names)


class BrokerMetricsTests(StudioTestCase):
    def test_unreachable_broker_is_reported_not_a_500(self):
        with (
            override_settings(REDIS_URL="redis://127.0.0.1:9/0"),
            self.assertLogs("studio.ops.collectors", "ERROR"),
        ):
            response = self.client.get("/metrics")
        self.assertEqual(response.status_code, 200)
        found = samples(response)
        self.assertEqual(found[("studio_broker_up", frozenset())], 0)
        self.assertEqual(found[("studio_jobs", frozenset({("state", "queued")}))], 0)

    def test_queue_depth_per_celery_queue(self):
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            self.skipTest("REDIS_URL is not set")
        from kombu import Connection

        # Queues of this test's own: the shared broker's real queues are left alone.
        waiting, empty = f"ops-test-{uuid.uuid4().hex}", f"ops-test-{uuid.uuid4().hex}"
        with Connection(redis_url) as connection:
            queue = connection.SimpleQueue(waiting)
            try:
                queue.put({"n": 1})
                queue.put({"n": 2})
                with override_settings(
                    REDIS_URL=redis_url, STUDIO_GPU_QUEUE=waiting, STUDIO_TRAIN_QUEUE=empty
                ):
                    found = samples(self.client.get("/metrics"))
            finally:
                queue.queue.delete()  # its messages and binding
                queue.close()
        self.assertEqual(found[("studio_broker_up", frozenset())], 1)
        messages = "studio_broker_queue_messages"
        self.assertEqual(found[(messages, frozenset({("queue", waiting)}))], 2)
        self.assertEqual(found[(messages, frozenset({("queue", empty)}))], 0)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WorkerMetricsServerTests(StudioTestCase):
    """A Celery worker, once ready, serves its metrics on STUDIO_WORKER_METRICS_PORT."""

    def test_off_unless_a_port_is_set(self):
        with override_settings(STUDIO_WORKER_METRICS_PORT=None):
            self.assertIn((worker_metrics_serve, None), worker_ready.send(sender=None))

    def test_serves_the_workers_metrics_once_ready(self):
        port = free_port()
        SWEEPER_ACTIONS.labels(action="job_wake_ups").inc()
        with override_settings(
            STUDIO_WORKER_METRICS_PORT=port, STUDIO_WORKER_METRICS_ADDR="127.0.0.1"
        ):
            [(_, server)] = [
                reply for reply in worker_ready.send(sender=None)
                if reply[0] is worker_metrics_serve
            ]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                body = reply.read().decode()
        finally:
            server.shutdown()
            server.server_close()
        self.assertIn('studio_sweeper_actions_total{action="job_wake_ups"}', body)

    def test_a_busy_port_is_logged_not_fatal(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with (
                override_settings(
                    STUDIO_WORKER_METRICS_PORT=port, STUDIO_WORKER_METRICS_ADDR="127.0.0.1"
                ),
                self.assertLogs("studio.ops.signals", "ERROR") as logs,
            ):
                self.assertIsNone(worker_metrics_serve())
        self.assertIn("STUDIO_WORKER_METRICS_PORT", logs.output[0])


class MetricsSettingsTests(StudioTestCase):
    def settings_import(self, **env):
        return subprocess.run(
            [sys.executable, "-c", "import studio.settings as s; "
             "print(s.STUDIO_METRICS_ALLOWED_NETWORKS, s.STUDIO_WORKER_METRICS_PORT)"],
            env={**os.environ, "SECRET_KEY": "k" * 50, **env},
            capture_output=True,
            text=True,
            cwd=settings.BASE_DIR,
        )

    def test_addresses_and_networks(self):
        done = self.settings_import(
            STUDIO_METRICS_ALLOWED_IPS="10.0.0.0/8, 192.0.2.7", STUDIO_WORKER_METRICS_PORT="9100"
        )
        self.assertEqual(
            done.stdout.strip(),
            "[IPv4Network('10.0.0.0/8'), IPv4Network('192.0.2.7/32')] 9100",
            done.stderr,
        )

    def test_bad_values_are_refused_by_name(self):
        for env, message in (
            ({"STUDIO_METRICS_ALLOWED_IPS": "10.0.0.0/8,intranet"},
             "STUDIO_METRICS_ALLOWED_IPS: 'intranet' does not appear to be an IPv4 or IPv6"),
            ({"STUDIO_WORKER_METRICS_PORT": "ninety"},
             "STUDIO_WORKER_METRICS_PORT must be a port number, not 'ninety'"),
            ({"STUDIO_WORKER_METRICS_PORT": "70000"},
             "STUDIO_WORKER_METRICS_PORT must be a port number, not '70000'"),
        ):
            with self.subTest(env=env):
                refused = self.settings_import(**env)
                self.assertNotEqual(refused.returncode, 0)
                self.assertIn(message, refused.stderr)
