"""One generation through every layer, over real processes: HTTP form post → job row →
worker (Celery on Redis, or the embedded one) → diffusers → PNG in storage → Image row,
with every event on a real WebSocket."""

import io
import json
import time

import pytest
from PIL import Image as PILImage
from websockets.sync.client import connect

from gallery.models import Image
from generation.models import DiffusionModel, GenerationJob, JobStatus
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.http import StudioClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password-1"


def member_with_project(username):
    user = User.objects.create_user(username, f"{username}@example.org", PASSWORD)
    team = Team.objects.create(name=f"{username} team")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user, Project.objects.create(team=team, name=f"{username} project")


def socket_for(client, project):
    url = client.base_url.replace("http://", "ws://") + f"/ws/projects/{project.pk}/"
    return connect(url, additional_headers=client.websocket_headers(), open_timeout=10)


def events_until_done(socket, timeout=300):
    received = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = json.loads(socket.recv(timeout=deadline - time.monotonic()))
        received.append(event)
        if event["type"] in ("job.finished", "job.failed", "job.canceled"):
            return received
    raise AssertionError(f"no final event in {timeout}s; got {received}")


def test_a_generation_travels_through_every_layer(studio_processes, tiny_model_dir):
    base_url = studio_processes["base_url"]
    ann, project = member_with_project("ann")
    ben, ben_project = member_with_project("ben")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))

    ann_client, ben_client = StudioClient(base_url), StudioClient(base_url)
    ann_client.log_in("ann", PASSWORD)
    ben_client.log_in("ben", PASSWORD)

    params = {"prompt": "a lighthouse at dusk, oil painting", "negative_prompt": "blurry",
              "model": model.pk, "steps": 6, "guidance_scale": 7.5, "width": 72,
              "height": 64, "seed": 31337}
    with (
        socket_for(ann_client, project) as ann_socket,
        socket_for(ben_client, ben_project) as ben_socket,
    ):
        status, _ = ann_client.post(f"/projects/{project.pk}/generate/", params,
                                    headers={"HX-Request": "true"})
        assert status == 200
        received = events_until_done(ann_socket)
        # The other user's socket, on her own project, heard none of it.
        with pytest.raises(TimeoutError):
            ben_socket.recv(timeout=0.5)

    job = GenerationJob.objects.get(project=project)
    assert received[-1]["type"] == "job.finished", received[-1]
    progress = [e["step"] for e in received if e["type"] == "job.progress"]
    assert progress == [1, 2, 3, 4, 5, 6]
    assert {e["job_id"] for e in received} == {job.pk}
    assert all(e["total"] == 6 for e in received if e["type"] == "job.progress")

    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert job.attempts == 1
    image = Image.objects.get(job=job)

    # The PNG comes back over HTTP, to its owner only, with its recipe inside.
    status, body = ann_client.get(received[-1]["images"][0]["url"])
    assert status == 200
    png = PILImage.open(io.BytesIO(body))
    assert png.size == (72, 64)
    parameters = png.info["parameters"]
    assert parameters.startswith("a lighthouse at dusk, oil painting\nNegative prompt: blurry\n")
    assert "Steps: 6" in parameters
    assert "Seed: 31337" in parameters
    assert "Size: 72x64" in parameters
    assert parameters == image.parameters
    with pytest.raises(Exception, match="404"):
        ben_client.get(received[-1]["images"][0]["url"])

    # The state is readable over HTTP too, for a page that missed a message.
    state = ann_client.get_json(f"/jobs/{job.pk}/")
    assert state["status"] == "finished"
    assert state["images"][0]["id"] == image.pk
