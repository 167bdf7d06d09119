"""Per-user limits on generate posts, uploads and imports, per-address limits on sign-ups,
and a per-user cap on open sockets: past a limit, a 429 that says when to retry."""

from unittest import mock

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from generation.models import GenerationJob, JobStatus
from studio.accounts.models import Membership, Project, Role, Team, User
from studio.realtime.consumers import CLOSE_TOO_MANY_SOCKETS
from studio.realtime.routing import websocket_urlpatterns
from tests.base import StudioTestCase, make_job
from tests.subject_builders import make_subject


@override_settings(STUDIO_GENERATE_POSTS_PER_MINUTE=2)
class GenerateRateTests(StudioTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)

    def post(self, **headers):
        return self.client.post(self.url, {"prompt": ""}, headers=headers)

    def test_past_the_limit_a_page_says_when_to_retry_and_nothing_is_made(self):
        self.assertEqual(self.post().status_code, 422)
        self.assertEqual(self.post().status_code, 422)
        response = self.post()
        self.assertEqual(response.status_code, 429)
        self.assertTrue(1 <= int(response["Retry-After"]) <= 60)
        self.assertContains(response, "limit of 2 generate requests per minute", status_code=429)
        self.assertContains(response, "Try again in", status_code=429)
        self.assertTemplateUsed(response, "429.html")
        self.assertFalse(GenerationJob.objects.exists())

    def test_each_user_has_their_own_count(self):
        for _ in range(3):
            self.post()
        self.client.force_login(self.owner)
        self.assertEqual(self.post().status_code, 422)

    def test_htmx_gets_a_notice_added_to_the_page(self):
        for _ in range(2):
            self.post()
        response = self.post(**{"HX-Request": "true"})
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response["HX-Retarget"], "body")
        self.assertEqual(response["HX-Reswap"], "beforeend")
        self.assertContains(response, 'class="alert alert-error throttled-notice"', status_code=429)
        self.assertNotContains(response, "<html", status_code=429)

    def test_json_clients_get_json(self):
        for _ in range(2):
            self.post()
        response = self.post(Accept="application/json")
        self.assertEqual(response.status_code, 429)
        body = response.json()
        self.assertEqual(body["error"], "too_many_requests")
        self.assertEqual(str(body["retry_after"]), response["Retry-After"])

    @override_settings(STUDIO_GENERATE_POSTS_PER_MINUTE=0)
    def test_zero_turns_the_limit_off(self):
        for _ in range(5):
            self.assertEqual(self.post().status_code, 422)

    def test_an_outsider_still_gets_a_404_not_a_count_of_someone_else(self):
        for _ in range(3):
            self.post()
        self.client.force_login(self.outsider)
        self.assertEqual(self.post().status_code, 404)

    def test_retries_count_as_generate_requests(self):
        # A retry queues a job as a generate post does: no way around the per-minute count.
        failed = make_job(self.project, self.editor, self.model, status=JobStatus.FAILED)
        self.post()
        self.post()
        with mock.patch("generation.services.enqueue_generation"):
            response = self.client.post(reverse("job_retry", args=[failed.pk]))
        self.assertEqual(response.status_code, 429)
        self.assertEqual(GenerationJob.objects.count(), 1)


@override_settings(STUDIO_UPLOADS_PER_HOUR=2)
class UploadRateTests(StudioTestCase):
    """LoRA, embedding and subject image uploads share one count per user."""

    def setUp(self):
        self.client.force_login(self.editor)
        self.subject = make_subject(self.team, self.editor, images=0)

    def test_uploads_of_every_kind_share_the_hourly_limit(self):
        junk = {"file": SimpleUploadedFile("x.safetensors", b"junk")}
        self.assertEqual(
            self.client.post(reverse("lora_upload", args=[self.team.pk]), junk).status_code, 422
        )
        junk = {"file": SimpleUploadedFile("x.safetensors", b"junk")}
        response = self.client.post(reverse("embedding_upload", args=[self.team.pk]), junk)
        self.assertNotEqual(response.status_code, 429)
        response = self.client.post(
            reverse("subject_images_upload", args=[self.subject.pk]),
            {"images": [SimpleUploadedFile("a.png", b"junk")]},
        )
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "limit of 2 uploads per hour", status_code=429)
        self.assertTrue(1 <= int(response["Retry-After"]) <= 3600)

    def test_showing_the_upload_form_is_not_an_upload(self):
        for _ in range(3):
            response = self.client.get(reverse("lora_upload", args=[self.team.pk]))
            self.assertEqual(response.status_code, 200)


@override_settings(STUDIO_IMPORTS_PER_MINUTE=1)
class ImportRateTests(StudioTestCase):
    def test_imports_past_the_limit_are_refused(self):
        self.client.force_login(self.editor)
        url = reverse("parameters_import", args=[self.project.pk])
        self.assertEqual(self.client.post(url, {}).status_code, 422)
        response = self.client.post(url, {})
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "limit of 1 parameter imports per minute", status_code=429)


@override_settings(STUDIO_PREVIEWS_PER_MINUTE=1)
class PreviewRateTests(StudioTestCase):
    def test_edge_previews_past_the_limit_are_refused(self):
        self.client.force_login(self.editor)
        url = reverse("control_preview", args=[self.project.pk])
        self.assertNotEqual(self.client.post(url, {}).status_code, 429)
        response = self.client.post(url, {})
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "limit of 1 edge previews per minute", status_code=429)


@override_settings(STUDIO_SIGNUPS_PER_HOUR_PER_IP=2)
class SignupRateTests(StudioTestCase):
    def sign_up(self, username, address):
        self.client.logout()
        data = {"username": username, "email": f"{username}@example.org",
                "password1": "a long passphrase 42", "password2": "a long passphrase 42"}
        return self.client.post(reverse("signup"), data, REMOTE_ADDR=address)

    def test_one_address_signs_up_at_most_the_limit_per_hour(self):
        self.assertEqual(self.sign_up("one", "10.1.1.1").status_code, 302)
        self.assertEqual(self.sign_up("two", "10.1.1.1").status_code, 302)
        response = self.sign_up("three", "10.1.1.1")
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "sign-ups from one address", status_code=429)
        self.assertFalse(get_user_model().objects.filter(username="three").exists())
        # Another address is not held up.
        self.assertEqual(self.sign_up("four", "10.1.1.2").status_code, 302)


# -- Sockets per user -----------------------------------------------------------------------

application = URLRouter(websocket_urlpatterns)


def member_with_project(username):
    user = User.objects.create_user(username, f"{username}@example.org", "pw")
    team = Team.objects.create(name=f"{username}'s team")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user, Project.objects.create(team=team, name=f"{username}'s project")


async def open_socket(user, project):
    socket = WebsocketCommunicator(application, f"/ws/projects/{project.pk}/")
    socket.scope["user"] = user
    connected, code = await socket.connect()
    return socket, connected, code


@pytest.fixture
def ann_and_ben(transactional_db):
    return member_with_project("ann"), member_with_project("ben")


@pytest.mark.django_db(transaction=True)
@override_settings(STUDIO_SOCKETS_PER_USER=2)
async def test_a_user_past_the_socket_cap_is_refused_and_a_closed_socket_frees_a_slot(ann_and_ben):
    (ann, project), (ben, ben_project) = ann_and_ben
    first, connected, _ = await open_socket(ann, project)
    second, connected_too, _ = await open_socket(ann, project)
    assert connected and connected_too
    _, refused, code = await open_socket(ann, project)
    assert not refused
    assert code == CLOSE_TOO_MANY_SOCKETS
    # Another user's sockets count apart.
    bens, ben_connected, _ = await open_socket(ben, ben_project)
    assert ben_connected
    await first.disconnect()
    third, connected_again, _ = await open_socket(ann, project)
    assert connected_again
    for socket in (second, third, bens):
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@override_settings(STUDIO_SOCKETS_PER_USER=1, STUDIO_SOCKET_SLOT_TTL_S=1)
async def test_slots_of_a_crashed_process_lapse(ann_and_ben):
    import asyncio

    (ann, project), _ = ann_and_ben
    # A slot left by a process that died without closing its socket.
    await cache.aadd(f"sockets:user-{ann.pk}:0", "a-dead-channel", timeout=1)
    _, connected, code = await open_socket(ann, project)
    assert not connected and code == CLOSE_TOO_MANY_SOCKETS
    await asyncio.sleep(1.2)
    socket, connected, _ = await open_socket(ann, project)
    assert connected
    # A live socket renews its slot, so it outlasts the lifetime.
    await asyncio.sleep(1.5)
    _, refused, _ = await open_socket(ann, project)
    assert not refused
    await socket.disconnect()
