"""A database that can't be reached answers 503 with Retry-After and a page saying to try
again, instead of a 500: the studio is fine, the database is restarting or unreachable."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 30
DETAIL = "The studio can't reach its database right now. Nothing was changed; try again shortly."


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """Turns a view's OperationalError or InterfaceError (a database down, restarting or
    out of connections) into a 503: JSON for clients that ask for it, else a page that
    needs no database (no user, no messages)."""

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("Database unavailable for %s %s: %s", request.method, request.path,
                       exception)
        if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
            response = JsonResponse(
                {"error": "database_unavailable", "detail": DETAIL,
                 "retry_after": RETRY_AFTER_S},
                status=503,
            )
        else:
            response = render(
                request, "503.html", {"detail": DETAIL, "retry_after": RETRY_AFTER_S},
                status=503,
            )
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
