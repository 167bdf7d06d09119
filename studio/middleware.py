"""Failures of what the studio stands on, answered as such instead of a 500: a database that
can't be reached is a 503 with Retry-After, a full disk a 507; each with a page saying what
to do (or JSON for clients that ask for it), rendered without the database."""

import logging
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

from studio.storage import storage_is_full

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unavailable:
    status: int
    error: str
    title: str
    detail: str
    when: str  # when to send a form again
    retry_after: int | None = None


DATABASE_DOWN = Unavailable(
    status=503,
    error="database_unavailable",
    title="Back in a moment",
    detail="The studio can't reach its database right now. Nothing was changed; try again "
    "shortly.",
    when="in 30 seconds or so",
    retry_after=30,
)
STORAGE_FULL = Unavailable(
    status=507,
    error="storage_full",
    title="Storage full",
    detail="The server's storage is full, so nothing you sent was saved. Ask an admin to "
    "free space.",
    when="once an admin has freed space",
)


class UnavailableMiddleware(MiddlewareMixin):
    """A view's OperationalError or InterfaceError (a database down, restarting or out of
    connections) becomes a 503; a full disk or spent quota, a 507."""

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("Database unavailable for %s %s: %s", request.method,
                           request.path, exception)
            answer = DATABASE_DOWN
        elif storage_is_full(exception):
            logger.error("Storage full for %s %s", request.method, request.path,
                         exc_info=exception)
            answer = STORAGE_FULL
        else:
            return None
        if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
            body = {"error": answer.error, "detail": answer.detail}
            if answer.retry_after:
                body["retry_after"] = answer.retry_after
            response = JsonResponse(body, status=answer.status)
        else:
            context = {"title": answer.title, "detail": answer.detail, "when": answer.when}
            response = render(request, "try_again.html", context, status=answer.status)
        if answer.retry_after:
            response["Retry-After"] = str(answer.retry_after)
        return response
