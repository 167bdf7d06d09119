"""Personal access tokens on the project WebSocket (studio.realtime.consumers): scripts
authenticate as over HTTP, with `Authorization: Bearer <token>`; browsers' WebSocket API,
which can't set headers, with `?token=<token>` (which servers' access logs may record:
prefer the header where the client can set one)."""

from functools import partial
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.security.websocket import WebsocketDenier

from studio.api.access import token_allows_now
from studio.api.tokens import token_for_secret
from studio.realtime.origin import SameOriginValidator


def socket_token(scope):
    """The secret a socket's handshake carries (header first), or None for none."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin1").partition(" ")
            if scheme.lower() == "bearer":
                return secret.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    return query.get("token", [None])[0]


class TokenSocketAuth:
    """A socket that carries a token acts for it, authorised as the HTTP API authorises the
    token (its team, projects and role, read again at each check, so a revoked token's
    socket closes); an unknown, expired or revoked token is refused at the handshake. A
    socket without one goes on to `session_app` unchanged.

    A token socket skips the Origin check, which guards the session cookie that browsers
    send by themselves: a token is sent only by whoever holds it."""

    def __init__(self, *, token_app, session_app):
        self.token_app, self.session_app = token_app, session_app

    async def __call__(self, scope, receive, send):
        secret = socket_token(scope)
        if secret is None:
            return await self.session_app(scope, receive, send)
        token = await database_sync_to_async(token_for_secret)(secret)
        if token is None:
            return await WebsocketDenier()(scope, receive, send)
        # The consumer asks `authorise(action, obj)` instead of the user's own permissions.
        scope = {**scope, "user": token.user, "authorise": partial(token_allows_now, token.pk)}
        return await self.token_app(scope, receive, send)


def websocket_application(urlpatterns):
    """The studio's sockets: by token, or by the session of a page of this site."""
    return TokenSocketAuth(
        token_app=URLRouter(urlpatterns),
        session_app=SameOriginValidator(AuthMiddlewareStack(URLRouter(urlpatterns))),
    )
