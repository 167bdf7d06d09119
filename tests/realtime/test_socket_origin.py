"""A socket opens only from a page of this very site: the Origin header's scheme, host and
port must be the request's own (or exactly one of CSRF_TRUSTED_ORIGINS)."""

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from studio.realtime.origin import SameOriginValidator

application = SameOriginValidator(AsyncWebsocketConsumer.as_asgi())


async def opens(origin, host="127.0.0.1:8000", **extra_headers):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(name.encode(), value.encode()) for name, value in extra_headers.items()]
    socket = WebsocketCommunicator(application, "/ws/projects/1/", headers=headers)
    connected, _ = await socket.connect()
    await socket.disconnect()
    return connected


async def test_the_sites_own_origin_opens():
    assert await opens("http://127.0.0.1:8000")


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9000",  # another port of an allowed host
        "http://127.0.0.1",  # the default port is another port
        "https://127.0.0.1:8000",  # another scheme
        "http://localhost:8000",  # another allowed host
        "http://evil.example",
        "null",
        "",
        "javascript:alert(1)",
    ],
)
async def test_other_origins_are_refused(origin):
    assert not await opens(origin)


async def test_no_origin_is_refused():
    assert not await opens(None)


async def test_a_host_outside_allowed_hosts_is_refused_even_from_itself():
    assert not await opens("http://evil.example:8000", host="evil.example:8000")


async def test_default_ports_match_either_way():
    assert await opens("http://localhost", host="localhost:80")
    assert await opens("http://localhost:80", host="localhost")


async def test_behind_a_tls_proxy_the_forwarded_scheme_counts():
    assert await opens("https://localhost", host="localhost", **{"x-forwarded-proto": "https"})
    assert not await opens("http://localhost", host="localhost", **{"x-forwarded-proto": "https"})
    assert not await opens("https://localhost", host="localhost")


@override_settings(
    ALLOWED_HOSTS=["studio.internal"], CSRF_TRUSTED_ORIGINS=["https://studio.example.com"]
)
async def test_a_trusted_origin_opens_only_exactly():
    assert await opens("https://studio.example.com", host="studio.internal")
    assert await opens("https://studio.example.com:443", host="studio.internal")
    assert not await opens("https://studio.example.com:8443", host="studio.internal")
    assert not await opens("http://studio.example.com", host="studio.internal")
    assert not await opens("https://sub.studio.example.com", host="studio.internal")
