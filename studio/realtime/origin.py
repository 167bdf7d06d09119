"""Sockets are opened only by pages of this site: the Origin header must be the request's
own scheme, host and port (or exactly one of CSRF_TRUSTED_ORIGINS), not merely a host that
ALLOWED_HOSTS lists, as channels' AllowedHostsOriginValidator checks."""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(url):
    """(scheme, host, port) of an http(s) origin, the port made explicit; None if not one."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port


def request_is_secure(scope, headers):
    """As Django's request.is_secure(): TLS here, or the proxy's SECURE_PROXY_SSL_HEADER."""
    if scope.get("scheme") in ("wss", "https"):
        return True
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
        return headers.get(header, b"").decode("latin1").split(",")[0].strip() == secure_value
    return False


def origin_allowed(scope):
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin1")
    host = headers.get(b"host", b"").decode("latin1")
    domain, _ = split_domain_port(host)
    if not origin or not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if request_is_secure(scope, headers) else "http"
    allowed = {origin_key(f"{scheme}://{host}")}
    allowed.update(origin_key(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)
    wanted = origin_key(origin)
    return wanted is not None and wanted in allowed


class SameOriginValidator:
    """ASGI middleware that refuses a socket whose Origin is not this site's own."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
