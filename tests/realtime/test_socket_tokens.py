"""The project WebSocket with a personal access token (Authorization: Bearer, or ?token= for
browsers' WebSocket API): authorised as the HTTP API authorises the token, through the
studio's own socket stack (studio.api.sockets.websocket_application, as studio.asgi)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from studio.accounts.models import Membership, Project, Role, Team, User
from studio.api.models import ApiToken
from studio.api.sockets import websocket_application
from studio.api.tokens import token_create, token_revoke
from studio.realtime import events
from studio.realtime.consumers import CLOSE_NOT_ALLOWED
from studio.realtime.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

application = websocket_application(websocket_urlpatterns)
EVENT = {"type": "job.progress", "job_id": 7, "step": 1, "total": 4}


def make_member_project(username, role=Role.OWNER):
    user = User.objects.create_user(username, f"{username}@example.org", "pw")
    team = Team.objects.create(name=f"{username}'s team")
    Membership.objects.create(team=team, user=user, role=role)
    return user, team, Project.objects.create(team=team, name=f"{username}'s project")


@pytest.fixture
def ann(db):
    return make_member_project("ann")


@pytest.fixture
def ben(db):
    return make_member_project("ben")


def secret_for(user, team, projects=()):
    return token_create(user=user, team=team, name="socket", role=Role.VIEWER, days=1,
                        projects=projects)[1]


async def connect(project, *, header=None, query=None):
    path = f"/ws/projects/{project.pk}/" + (f"?token={query}" if query else "")
    headers = [(b"authorization", f"Bearer {header}".encode())] if header else []
    socket = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await socket.connect(timeout=5)
    if not connected:
        # Let the refused socket's application end here, not in a later test.
        await socket.disconnect()
    return socket, connected, code


async def test_a_team_token_in_the_header_joins_and_receives_the_projects_events(ann):
    user, team, project = ann
    secret = await database_sync_to_async(secret_for)(user, team)
    socket, connected, _ = await connect(project, header=secret)
    assert connected  # without an Origin header: a script's socket
    await asyncio.to_thread(events.publish, project.events_group(), EVENT)
    assert await socket.receive_json_from(timeout=2) == EVENT
    await socket.disconnect()


async def test_a_browser_passes_the_token_in_the_query(ann):
    user, team, project = ann
    secret = await database_sync_to_async(secret_for)(user, team)
    socket, connected, _ = await connect(project, query=secret)
    assert connected
    await socket.disconnect()


async def test_another_teams_token_is_refused(ann, ben):
    _, _, ann_project = ann
    ben_user, ben_team, _ = ben
    secret = await database_sync_to_async(secret_for)(ben_user, ben_team)
    _, connected, code = await connect(ann_project, header=secret)
    assert not connected
    assert code == CLOSE_NOT_ALLOWED


async def test_a_token_limited_to_another_project_is_refused(ann):
    user, team, project = ann
    other = await database_sync_to_async(Project.objects.create)(team=team, name="Other")
    secret = await database_sync_to_async(secret_for)(user, team, [other])
    _, connected, code = await connect(project, header=secret)
    assert not connected
    assert code == CLOSE_NOT_ALLOWED


async def test_a_revoked_or_unknown_token_is_refused_at_the_handshake(ann):
    user, team, project = ann
    secret = await database_sync_to_async(secret_for)(user, team)
    token = await database_sync_to_async(ApiToken.objects.get)()
    await database_sync_to_async(token_revoke)(token=token, by=user)
    for tried in (secret, "stu_not-a-token"):
        _, connected, _ = await connect(project, header=tried)
        assert not connected


async def test_revoking_the_token_closes_its_open_socket(ann):
    user, team, project = ann
    secret = await database_sync_to_async(secret_for)(user, team)
    socket, connected, _ = await connect(project, query=secret)
    assert connected
    token = await database_sync_to_async(ApiToken.objects.get)()
    # In a thread: revoking tells the user's sockets on this (the server's) loop.
    await database_sync_to_async(token_revoke)(token=token, by=user)
    assert (await socket.receive_output(timeout=2))["code"] == CLOSE_NOT_ALLOWED


async def test_without_a_token_the_session_stack_still_checks_the_origin(ann):
    _, _, project = ann
    _, connected, _ = await connect(project)
    assert not connected
