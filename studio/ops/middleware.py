import logging
import re
import time
import uuid

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

from studio.ops.logging import log_context
from studio.ops.metrics import REQUEST_LATENCY

# One line per request, for JSON logs; text logs leave it to daphne's own access log.
access_logger = logging.getLogger("studio.access")

REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy or client may hand us as a request id: short and log-safe (no spaces,
# quotes or newlines that could forge log lines); anything else gets a fresh id.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Any other method string is one label value, so a client can't mint new series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_of(request):
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    if SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


@sync_and_async_middleware
def request_id_middleware(get_response):
    """Gives each request an id (a sane incoming X-Request-ID, else a new one): every log
    line written while answering it carries the id, and the response echoes it."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            request.request_id = request_id_of(request)
            with log_context(request_id=request.request_id):
                response = await get_response(request)
            response[REQUEST_ID_HEADER] = request.request_id
            return response

    else:

        def middleware(request):
            request.request_id = request_id_of(request)
            with log_context(request_id=request.request_id):
                response = get_response(request)
            response[REQUEST_ID_HEADER] = request.request_id
            return response

    return middleware


def request_finished(*, request, response, started):
    """Its latency in the histogram, and its access log line (studio.access)."""
    elapsed = time.perf_counter() - started
    match = getattr(request, "resolver_match", None)
    # The URL pattern, not the path: one series per view, whatever ids the path holds.
    route = match.route if match is not None else "<unmatched>"
    method = request.method if request.method in KNOWN_METHODS else "other"
    REQUEST_LATENCY.labels(
        method=method, route=route, status=f"{response.status_code // 100}xx"
    ).observe(elapsed)
    access_logger.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 1),
        },
    )


@sync_and_async_middleware
def request_latency_middleware(get_response):
    """Times each request: studio_http_request_duration_seconds and the access log."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            started = time.perf_counter()
            response = await get_response(request)
            request_finished(request=request, response=response, started=started)
            return response

    else:

        def middleware(request):
            started = time.perf_counter()
            response = get_response(request)
            request_finished(request=request, response=response, started=started)
            return response

    return middleware
