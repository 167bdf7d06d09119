"""Refusals as application/problem+json (RFC 9457), and the studio's rate limits for API
requests."""

from http import HTTPStatus

from django.http import JsonResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """A refusal to answer as problem+json; `errors`: [{"field": ..., "message": ...}]."""

    def __init__(self, status, detail, *, title=None, errors=None, headers=None):
        super().__init__(detail)
        self.status, self.detail, self.title = status, detail, title
        self.errors, self.headers = errors or [], headers or {}


def problem_response(status, detail, *, title=None, errors=None, headers=None):
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    response = JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def throttle(request, limiter):
    """Count the request against one of the studio's rate limits (studio.throttling, the
    same counters as the browser's); past it, a 429 with Retry-After."""
    limited = limiter(lambda request: None)(request)
    if limited is not None:
        retry_after = int(limited["Retry-After"])
        raise Problem(
            429,
            f"Too many requests: try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
