import asyncio

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from studio.accounts.models import Membership, Project, Role, Team, User
from studio.realtime import events
from studio.realtime.consumers import CLOSE_NOT_ALLOWED
from studio.realtime.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)


def make_member_project(username):
    user = User.objects.create_user(username, f"{username}@example.org", "pw")
    team = Team.objects.create(name=f"{username}'s team")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user, Project.objects.create(team=team, name=f"{username}'s project")


async def connect(user, project):
    communicator = WebsocketCommunicator(application, f"/ws/projects/{project.pk}/")
    communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.fixture
def two_users(db):
    return make_member_project("ann"), make_member_project("ben")


async def test_member_receives_events_of_the_project(two_users):
    (ann, ann_project), _ = two_users
    socket, connected, _ = await connect(ann, ann_project)
    assert connected
    await events.apublish(ann_project.events_group(), {"type": "job.progress", "step": 1})
    assert await socket.receive_json_from() == {"type": "job.progress", "step": 1}
    await socket.disconnect()


async def test_second_users_socket_gets_none_of_the_first_users_events(two_users):
    (ann, ann_project), (ben, ben_project) = two_users
    ann_socket, _, _ = await connect(ann, ann_project)
    ben_socket, connected, _ = await connect(ben, ben_project)
    assert connected
    await events.apublish(ann_project.events_group(), {"type": "job.finished", "job_id": 1})
    assert (await ann_socket.receive_json_from())["type"] == "job.finished"
    assert await ben_socket.receive_nothing(timeout=0.3)
    await ann_socket.disconnect()
    await ben_socket.disconnect()


async def test_outsider_is_refused_before_joining_the_group(two_users):
    (ann, ann_project), (ben, _) = two_users
    socket, connected, code = await connect(ben, ann_project)
    assert not connected
    assert code == CLOSE_NOT_ALLOWED


async def test_anonymous_is_refused(two_users):
    from django.contrib.auth.models import AnonymousUser

    (_, ann_project), _ = two_users
    _, connected, code = await connect(AnonymousUser(), ann_project)
    assert not connected


async def test_publish_from_a_worker_thread_reaches_the_socket(two_users):
    (ann, ann_project), _ = two_users
    socket, _, _ = await connect(ann, ann_project)
    payload = {"type": "job.progress", "job_id": 7, "step": 3, "total": 4}
    await asyncio.to_thread(events.publish, ann_project.events_group(), payload)
    assert await socket.receive_json_from(timeout=2) == payload
    await socket.disconnect()


@pytest.fixture
def team_with_member(two_users):
    (ann, ann_project), _ = two_users
    cal = User.objects.create_user("cal", "cal@example.org", "pw")
    membership = Membership.objects.create(team=ann_project.team, user=cal, role=Role.EDITOR)
    return ann, cal, ann_project, membership


async def test_removed_member_socket_is_closed_and_gets_no_more_events(team_with_member):
    from channels.db import database_sync_to_async

    from studio.accounts.services import membership_remove

    ann, cal, project, membership = team_with_member
    ann_socket, _, _ = await connect(ann, project)
    cal_socket, connected, _ = await connect(cal, project)
    assert connected

    await database_sync_to_async(membership_remove)(membership=membership)

    assert await cal_socket.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": CLOSE_NOT_ALLOWED,
    }
    await events.apublish(project.events_group(), {"type": "job.finished", "job_id": 2})
    assert (await ann_socket.receive_json_from())["type"] == "job.finished"
    assert await cal_socket.receive_nothing(timeout=0.3)
    await ann_socket.disconnect()


async def test_access_check_keeps_sockets_of_users_who_still_may_see(team_with_member):
    ann, _, project, _ = team_with_member
    socket, _, _ = await connect(ann, project)
    await asyncio.to_thread(events.access_changed, ann.pk)
    await events.apublish(project.events_group(), {"type": "job.progress", "step": 2})
    assert await socket.receive_json_from(timeout=2) == {"type": "job.progress", "step": 2}
    await socket.disconnect()
