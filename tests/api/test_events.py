"""/api/v1 server-sent events: a job's and a project's live events over real HTTP (uvicorn in
the test process), published by the code that publishes them in production (the worker's
job execution, the API's cancel, services); the state first, the job's stream ended by its
last event, keep-alives, and nothing for another team or a caller who lost access."""

import json
import time
from contextlib import ExitStack
from unittest import mock

import httpx
from channels.layers import get_channel_layer
from django.test import TransactionTestCase, override_settings
from openapi_schema_validator import OAS31Validator

from generation import services
from generation.models import JobStatus
from studio.accounts.models import Membership
from studio.accounts.services import membership_remove
from studio.api.api import api
from studio.api.models import ApiToken
from studio.api.tokens import token_create, token_revoke
from studio.realtime.event_types import EventType
from studio.realtime.events import publish_all
from tests.api.asgi_live import AsgiServer
from tests.api.base import ApiTestCase
from tests.base import StudioTestCase, make_job
from tests.quota_helpers import fake_result

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"

# Every wait on the stream is bounded: a missing event fails the test, never hangs it.
READ_TIMEOUT_S = 10


def wait_for(condition, timeout=READ_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def fake_generate_all(requests, *, on_step, **callbacks):
    """The engine's two steps of one image, reported as the real engine reports them."""
    for step in (1, 2):
        on_step(step, 2)
    return [fake_result(elapsed_s=0.1, batch_size=1)]


class EventStream:
    """An open event stream: `next()` is its next event (a dict, checked against the
    published Event schema) or a comment ("keep-alive"); `ended()` once it closed."""

    event_schema = OAS31Validator(api.get_openapi_schema()["components"]["schemas"]["Event"])

    def __init__(self, response):
        self.response = response
        self.items = self.parse(response.iter_lines())

    def parse(self, lines):
        data = []
        for line in lines:
            if line.startswith(":"):
                yield line[1:].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].strip())
            elif line == "" and data:
                event = json.loads("\n".join(data))
                self.event_schema.validate(event)
                yield event
                data = []

    def next(self):
        return next(self.items)

    def events_until(self, event_type):
        found = []
        while not found or found[-1]["type"] != event_type:
            item = self.next()
            if isinstance(item, dict):
                found.append(item)
        return found

    def ended(self):
        return next(self.items, None) is None


@override_settings(ALLOWED_HOSTS=["127.0.0.1"])
class EventStreamTests(TransactionTestCase):
    password = StudioTestCase.password

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = AsgiServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        super().tearDownClass()

    def setUp(self):
        StudioTestCase.setUpTestData.__func__(type(self))
        stack = ExitStack()
        self.addCleanup(stack.close)
        stack.enter_context(mock.patch("generation.services.enqueue_generation"))
        stack.enter_context(mock.patch("gallery.services.image_thumbnails_schedule"))
        stack.enter_context(mock.patch("studio.moderation.scanning.image_scan_schedule"))
        self.http = stack.enter_context(httpx.Client(
            base_url=self.server.url, timeout=httpx.Timeout(READ_TIMEOUT_S)
        ))
        self.streams = stack

    def token(self, user):
        return token_create(user=user, team=self.team, name="events",
                            role=self.team.role_of(user), days=1)[1]

    def open(self, path, *, secret=None, cookies=None):
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        response = self.streams.enter_context(
            self.http.stream("GET", f"/api/v1{path}", headers=headers, cookies=cookies)
        )
        if response.status_code != 200:
            self.fail(response.read())
        self.assertEqual(response.headers["content-type"], "text/event-stream")
        self.assertEqual(response.headers["cache-control"], "no-cache")
        return EventStream(response)

    def open_listening(self, path, **credentials):
        """The stream once it listens: the server sends response headers before the body
        joins its groups, so a change made before the first keep-alive (which comes after
        the state, none here) could go unheard."""
        with mock.patch("studio.api.events.KEEPALIVE_S", 0.2):
            stream = self.open(path, **credentials)
            self.assertEqual(stream.next(), "keep-alive")
        return stream

    def test_a_job_streams_its_state_then_its_run_until_it_ends(self):
        secret = self.token(self.editor)
        created = self.http.post(
            f"/api/v1/projects/{self.project.pk}/jobs",
            headers={"Authorization": f"Bearer {secret}"},
            json={"prompt": "a lighthouse", "model": self.model.pk, "steps": 2,
                  "width": 64, "height": 64},
        )
        self.assertEqual(created.status_code, 201, created.text)
        job_id = created.json()["jobs"][0]["id"]
        stream = self.open(f"/jobs/{job_id}/events", secret=secret)
        first = stream.next()
        self.assertEqual((first["type"], first["job_id"], first["status"], first["position"]),
                         ("job.queued", job_id, "queued", 1))

        from generation.execution import job_execute

        with mock.patch("generation.execution.generate_all", side_effect=fake_generate_all):
            job_execute(job_id=job_id)

        events = stream.events_until("job.finished")
        self.assertEqual([(event["type"], event["step"]) for event in events],
                         [("job.started", 0), ("job.progress", 1), ("job.progress", 2),
                          ("job.finished", 2)])
        self.assertEqual(len(events[-1]["images"]), 1)
        self.assertTrue(stream.ended())

    def test_canceling_the_job_ends_its_stream(self):
        job = make_job(self.project, self.editor, self.model)
        secret = self.token(self.editor)
        stream = self.open(f"/jobs/{job.pk}/events", secret=secret)
        self.assertEqual(stream.next()["type"], "job.queued")
        canceled = self.http.post(f"/api/v1/jobs/{job.pk}/cancel",
                                  headers={"Authorization": f"Bearer {secret}"})
        self.assertEqual(canceled.status_code, 200, canceled.text)
        [event] = stream.events_until("job.canceled")
        self.assertEqual((event["job_id"], event["status"]), (job.pk, "canceled"))
        self.assertTrue(stream.ended())

    def test_a_job_canceled_with_the_members_other_jobs_ends_its_stream_too(self):
        job = make_job(self.project, self.editor, self.model)
        stream = self.open(f"/jobs/{job.pk}/events", secret=self.token(self.editor))
        stream.next()
        services.jobs_cancel_queued(user=self.editor, by=self.admin, team=self.team)
        [event] = stream.events_until("job.canceled")
        self.assertEqual(event["job_id"], job.pk)
        self.assertTrue(stream.ended())

    def test_events_published_together_reach_the_stream_each_as_its_own(self):
        """A worker's progress report goes out as one message per project
        (studio.realtime.events.publish_all): the stream passes on this job's events of it,
        each as an event, and ends at the job's last."""
        job = make_job(self.project, self.editor, self.model)
        other = make_job(self.project, self.editor, self.model)
        stream = self.open(f"/jobs/{job.pk}/events", secret=self.token(self.editor))
        self.assertEqual(stream.next()["type"], "job.queued")
        group = self.project.events_group()
        publish_all([
            (group, other.event_payload(type=EventType.JOB_STARTED)),
            (group, job.event_payload(type=EventType.JOB_STARTED)),
            (group, job.event_payload(type=EventType.JOB_CANCELED)),
            (group, other.event_payload(type=EventType.JOB_CANCELED)),
        ])
        events = stream.events_until("job.canceled")
        self.assertEqual([(event["type"], event["job_id"]) for event in events],
                         [("job.started", job.pk), ("job.canceled", job.pk)])
        self.assertTrue(stream.ended())

    def test_an_ended_job_sends_its_state_and_closes(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FAILED,
                       error="out of memory")
        stream = self.open(f"/jobs/{job.pk}/events", secret=self.token(self.viewer))
        state = stream.next()
        self.assertEqual((state["type"], state["error"]), ("job.failed", "out of memory"))
        self.assertTrue(stream.ended())

    def test_the_project_stream_of_a_signed_in_member(self):
        waiting = make_job(self.project, self.editor, self.model)
        elsewhere = make_job(self.other_project, self.outsider, self.model)
        self.client.login(username=self.viewer.username, password=self.password)
        cookies = {"sessionid": self.client.cookies["sessionid"].value}
        with mock.patch("studio.api.events.KEEPALIVE_S", 0.2):
            stream = self.open(f"/projects/{self.project.pk}/events", cookies=cookies)
            first = stream.next()
            self.assertEqual((first["type"], first["job_id"]), ("job.queued", waiting.pk))
            self.assertEqual(stream.next(), "keep-alive")
        services.job_cancel(job=elsewhere, user=self.outsider)
        services.job_cancel(job=waiting, user=self.editor)
        events = stream.events_until("job.canceled")
        # The other team's cancel reached its own project's group only.
        self.assertEqual({event["project_id"] for event in events}, {self.project.pk})
        self.assertEqual(events[-1]["job_id"], waiting.pk)

    def test_a_member_removed_from_the_team_loses_the_stream(self):
        stream = self.open_listening(f"/projects/{self.project.pk}/events",
                                     secret=self.token(self.viewer))
        membership_remove(membership=Membership.objects.get(team=self.team, user=self.viewer))
        self.assertTrue(stream.ended())

    # The in-memory layer, whichever the run uses (Redis with REDIS_URL): its groups can be
    # looked at.
    @override_settings(CHANNEL_LAYERS={"default": {"BACKEND": IN_MEMORY_LAYER}})
    def test_a_client_that_goes_away_leaves_the_projects_group(self):
        layer = get_channel_layer()
        group = self.project.events_group()
        stream = self.open(f"/projects/{self.project.pk}/events",
                           secret=self.token(self.viewer))
        self.assertTrue(wait_for(lambda: layer.groups.get(group)))
        stream.response.close()
        self.assertTrue(wait_for(lambda: not layer.groups.get(group)))

    def test_signing_out_ends_the_sessions_stream(self):
        self.client.login(username=self.viewer.username, password=self.password)
        cookies = {"sessionid": self.client.cookies["sessionid"].value}
        stream = self.open_listening(f"/projects/{self.project.pk}/events", cookies=cookies)
        self.client.logout()
        self.assertTrue(stream.ended())

    def test_a_revoked_token_loses_the_stream(self):
        stream = self.open_listening(f"/projects/{self.project.pk}/events",
                                     secret=self.token(self.viewer))
        token_revoke(token=ApiToken.objects.get(user=self.viewer), by=self.viewer)
        self.assertTrue(stream.ended())


class EventStreamRefusalTests(ApiTestCase):
    """Refusals come before the stream opens: problem+json, as the schema says."""

    def test_another_teams_token_gets_404(self):
        job = make_job(self.project, self.editor, self.model)
        secret = self.token(self.outsider)
        for path in (f"/jobs/{job.pk}/events", f"/projects/{self.project.pk}/events"):
            self.assert_problem(self.api("get", path, secret), 404)

    def test_a_token_limited_to_another_project_gets_404(self):
        project = self.team.projects.create(name="Other posters")
        secret = self.token(self.editor, projects=[project])
        self.assert_problem(self.api("get", f"/projects/{self.project.pk}/events", secret), 404)

    def test_no_credentials_get_401_and_a_revoked_token_too(self):
        self.assert_problem(self.api("get", f"/projects/{self.project.pk}/events"), 401)
        secret = self.token(self.editor)
        token_revoke(token=ApiToken.objects.get(), by=self.editor)
        self.assert_problem(
            self.api("get", f"/projects/{self.project.pk}/events", secret), 401
        )

    def test_an_unknown_job_is_404(self):
        self.assert_problem(self.api("get", "/jobs/999999/events", self.token(self.editor)), 404)
