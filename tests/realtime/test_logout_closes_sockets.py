"""Logging out closes the project sockets the browser opened in that session, at once."""

import asyncio

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from studio.accounts.models import Membership, Project, Role, Team, User
from studio.realtime.consumers import CLOSE_SIGNED_OUT
from studio.realtime.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


@pytest.fixture
def ann_project(transactional_db):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="Ann's team")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user, Project.objects.create(team=team, name="Posters")


async def signed_in_browser(user):
    browser = Client()
    await asyncio.to_thread(browser.force_login, user)
    return browser


async def open_socket(browser, project):
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    socket = WebsocketCommunicator(
        application, f"/ws/projects/{project.pk}/", headers=[(b"cookie", cookie.encode())]
    )
    connected, _ = await socket.connect()
    assert connected
    return socket


async def test_logging_out_closes_that_sessions_sockets(ann_project):
    ann, project = ann_project
    browser = await signed_in_browser(ann)
    socket = await open_socket(browser, project)
    other_tab = await open_socket(browser, project)

    response = await asyncio.to_thread(browser.post, reverse("logout"))
    assert response.status_code == 302

    for closing in (socket, other_tab):
        closed = await closing.receive_output(timeout=2)
        assert closed == {"type": "websocket.close", "code": CLOSE_SIGNED_OUT}


async def test_the_users_other_sessions_keep_their_sockets(ann_project):
    ann, project = ann_project
    laptop = await signed_in_browser(ann)
    phone = await signed_in_browser(ann)
    laptop_socket = await open_socket(laptop, project)
    phone_socket = await open_socket(phone, project)

    await asyncio.to_thread(laptop.post, reverse("logout"))

    assert (await laptop_socket.receive_output(timeout=2))["code"] == CLOSE_SIGNED_OUT
    assert await phone_socket.receive_nothing(timeout=0.3)
    await phone_socket.disconnect()
