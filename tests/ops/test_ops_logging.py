"""Structured logs: every line written while answering a request, running a job or a
Celery task carries its ids; STUDIO_LOG_FORMAT=json writes one JSON object per line."""

import io
import json
import logging
import os
import subprocess
import sys
import threading

from django.conf import settings
from django.test import AsyncClient, TestCase
from pythonjsonlogger.json import JsonFormatter

from studio.celery import app as celery_app
from studio.ops.logging import LogContextFilter, current_log_ids, log_context


class JsonLines:
    """The settings' JSON formatter and context filter on a logger, into a buffer."""

    def __init__(self, logger_name):
        options = {
            key: value
            for key, value in settings.LOGGING["formatters"]["json"].items()
            if key != "()"
        }
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter(**options))
        self.handler.addFilter(LogContextFilter())
        self.logger = logging.getLogger(logger_name)

    def __enter__(self):
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self.handler)

    def records(self):
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


class RequestIdTests(TestCase):
    def test_log_lines_of_a_request_carry_its_id(self):
        with JsonLines("django.request") as lines:
            response = self.client.get("/no/such/page/")
        self.assertEqual(response.status_code, 404)
        [record] = lines.records()
        self.assertEqual(record["request_id"], response["X-Request-ID"])
        self.assertEqual(record["level"], "WARNING")
        self.assertEqual(record["logger"], "django.request")
        self.assertIn("Not Found", record["message"])
        self.assertIn("time", record)

    async def test_async_requests_too(self):
        with JsonLines("django.request") as lines:
            response = await AsyncClient().get("/no/such/page/")
        [record] = lines.records()
        self.assertEqual(record["request_id"], response["X-Request-ID"])

    def test_access_line_per_request(self):
        access = logging.getLogger("studio.access")
        level = access.level
        access.setLevel(logging.INFO)  # as with STUDIO_LOG_FORMAT=json
        self.addCleanup(access.setLevel, level)
        with JsonLines("studio.access") as lines:
            response = self.client.get("/healthz", headers={"X-Request-ID": "abc-1"})
        [record] = lines.records()
        self.assertEqual(record["message"], "GET /healthz 200")
        self.assertEqual(
            {key: record[key] for key in ("request_id", "method", "path", "status")},
            {"request_id": "abc-1", "method": "GET", "path": "/healthz", "status": 200},
        )
        self.assertGreaterEqual(record["duration_ms"], 0)
        self.assertEqual(response["X-Request-ID"], "abc-1")

    def test_each_request_gets_a_new_id(self):
        first = self.client.get("/healthz")["X-Request-ID"]
        second = self.client.get("/healthz")["X-Request-ID"]
        self.assertRegex(first, r"^[0-9a-f]{32}$")
        self.assertNotEqual(first, second)

    def test_a_sane_incoming_id_is_kept(self):
        response = self.client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:0042"})
        self.assertEqual(response["X-Request-ID"], "lb-7f3a:0042")

    def test_an_odd_incoming_id_is_replaced(self):
        for odd in ("two words", 'quote"d', "x" * 129, "line\\nbreak", "é"):
            with self.subTest(odd=odd):
                response = self.client.get("/healthz", headers={"X-Request-ID": odd})
                self.assertRegex(response["X-Request-ID"], r"^[0-9a-f]{32}$")

    def test_no_id_is_left_behind_after_the_request(self):
        self.client.get("/healthz")
        self.assertEqual(current_log_ids(), {})


class LogContextTests(TestCase):
    def test_job_ids_in_json_lines(self):
        logger = logging.getLogger("tests.ops")
        with JsonLines("tests.ops") as lines:
            with log_context(job_id=12):
                with log_context(run_id=3):
                    logger.warning("inner")
                logger.warning("outer")
            logger.warning("after")
        inner, outer, after = lines.records()
        self.assertEqual((inner["job_id"], inner["run_id"]), (12, 3))
        self.assertEqual(outer["job_id"], 12)
        self.assertNotIn("run_id", outer)
        self.assertNotIn("job_id", after)

    def test_threads_keep_their_own_ids(self):
        seen = {}

        def other():
            seen["other"] = current_log_ids()

        with log_context(job_id=1):
            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        self.assertEqual(seen["other"], {})

    def test_unknown_names_are_refused(self):
        with self.assertRaisesMessage(TypeError, "not user"):
            with log_context(user=1):
                pass

    def test_celery_tasks_log_their_task_id(self):
        @celery_app.task(name="tests.ops.test_ops_logging.say")
        def say():
            logging.getLogger("tests.ops").warning("in a task")

        with JsonLines("tests.ops") as lines:
            result = say.apply(task_id="task-123")
        self.assertTrue(result.successful())
        [record] = lines.records()
        self.assertEqual(record["task_id"], "task-123")
        self.assertEqual(current_log_ids(), {})


class LogFormatSettingTests(TestCase):
    def settings_logging(self, **env):
        code = (
            "import json, studio.settings as s; "
            "print(json.dumps([s.LOGGING['handlers']['console']['formatter'], "
            "s.CELERY_WORKER_HIJACK_ROOT_LOGGER, "
            "s.LOGGING['loggers']['studio.access']['level']]))"
        )
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "SECRET_KEY": "k" * 50, **env},
            capture_output=True,
            text=True,
            cwd=settings.BASE_DIR,
        )

    def test_text_by_default_json_on_request(self):
        default = self.settings_logging()
        # daphne writes the access log of text logs.
        self.assertEqual(json.loads(default.stdout), ["text", True, "WARNING"], default.stderr)
        chosen = self.settings_logging(STUDIO_LOG_FORMAT="json")
        # Celery workers then log through the same JSON handler.
        self.assertEqual(json.loads(chosen.stdout), ["json", False, "INFO"], chosen.stderr)

    def test_other_formats_are_refused_by_name(self):
        refused = self.settings_logging(STUDIO_LOG_FORMAT="xml")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("STUDIO_LOG_FORMAT must be text or json, not 'xml'", refused.stderr)


def test_task_hooks_in_different_contexts_of_a_thread_never_raise():
    # Celery's threads pool may run prerun and postrun in different contexts; a context
    # token from one can't be reset in the other.
    import contextvars

    from studio.ops.logging import current_log_ids
    from studio.ops.signals import task_log_id_clear, task_log_id_set

    context = contextvars.copy_context()
    context.run(task_log_id_set, task_id="task-1")
    assert context.run(current_log_ids)["task_id"] == "task-1"
    contextvars.copy_context().run(task_log_id_clear, task_id="task-1")
    context.run(task_log_id_clear, task_id="task-1")
    assert "task_id" not in context.run(current_log_ids)
