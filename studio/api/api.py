"""The native HTTP API, /api/v1/ (django-ninja): its authentication, its error format and
its routers. OpenAPI 3 at /api/v1/openapi.json, the reference page at /api/v1/docs.

Requests authenticate with a personal access token (`Authorization: Bearer <token>`, no
CSRF) or the browser's session (CSRF checked, as for any form). Every refusal is an
`application/problem+json` body (RFC 9457) whose `errors` name the fields at fault.
"""

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, SessionAuth

from studio.api import account, events, images, jobs, library
from studio.api.problems import PROBLEM_CONTENT_TYPE, Problem, problem_response
from studio.api.tokens import token_for_secret
from studio.quotas.services import QuotaRefused


class TokenAuth(HttpBearer):
    def authenticate(self, request, token):
        found = token_for_secret(token)
        if found is None:
            # A token was sent: refuse it rather than fall back to a session cookie.
            raise AuthenticationError(401, "The token is unknown, expired or revoked.")
        # The rest of the studio (rate limits, services) sees the token's user.
        request.user = found.user
        return found


# Every operation may answer a refusal; the schema says so once, for all of them.
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string", "nullable": True},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


class StudioAPI(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        """ninja's schema, with the refusals (4XX, application/problem+json) that every
        operation may answer and that the routes leave out."""
        schema = super().get_openapi_schema(*args, **kwargs)
        schemas = schema["components"].setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        # What each `data:` line of the event streams holds.
        schemas["Event"] = events.EVENT_SCHEMA
        refusal = {
            "description": "A refusal: the request is invalid, unauthorized, not found, "
                           "or over a limit (with Retry-After).",
            "content": {PROBLEM_CONTENT_TYPE: {
                "schema": {"$ref": "#/components/schemas/Problem"}
            }},
        }
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["responses"].setdefault("4XX", refusal)
        return schema


api = StudioAPI(
    title="Studio API",
    version="1",
    description=(
        "Generate, follow and fetch images with the studio's permissions, moderation, "
        "quotas and rate limits. Authenticate with `Authorization: Bearer <token>` (make "
        "tokens under Account → API tokens). Errors are `application/problem+json`."
    ),
    auth=[TokenAuth(), SessionAuth()],
    urls_namespace="api-v1",
)


def field_name(location):
    """A pydantic error location as the field's name: ("body", "payload", "steps") → steps."""
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path", "header", "form", "file"):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] in ("payload", "filters"):
        parts = parts[1:]
    return ".".join(parts) or None


def add_error_handlers(api, respond, *, scheme, how_to_authenticate):
    """The refusals every API of the studio answers alike, each as `respond(status, detail,
    title=, errors=, headers=)` writes its body; `scheme`: WWW-Authenticate's challenge."""

    @api.exception_handler(NinjaValidationError)
    def on_validation_error(request, error):
        errors = [
            {"field": field_name(item.get("loc", ())), "message": item.get("msg", "Invalid.")}
            for item in error.errors
        ]
        named = "; ".join(f"{item['field']}: {item['message']}" for item in errors)
        return respond(422, f"Invalid request: {named}", errors=errors)

    @api.exception_handler(Problem)
    def on_problem(request, error):
        return respond(
            error.status, error.detail, title=error.title, errors=error.errors,
            headers=error.headers,
        )

    @api.exception_handler(AuthenticationError)
    def on_authentication_error(request, error):
        detail = error.message if error.message != "Unauthorized" else how_to_authenticate
        return respond(401, detail, headers={"WWW-Authenticate": scheme})

    @api.exception_handler(Http404)
    def on_not_found(request, error):
        return respond(404, "Not found, or not visible to you.")

    @api.exception_handler(QuotaRefused)
    def on_quota_refused(request, error):
        # A limit that frees up by waiting (active images, images per hour) is a 429; its
        # message says when, and Retry-After asks clients to wait at least a minute.
        headers = {"Retry-After": "60"} if error.status_code == 429 else None
        return respond(error.status_code, str(error), title="Quota refused", headers=headers)

    @api.exception_handler(PermissionDenied)
    def on_permission_denied(request, error):
        return respond(403, str(error) or "You may not do this.")

    @api.exception_handler(RequestDataTooBig)
    def on_too_big(request, error):
        return respond(413, "The request body is too large.")

    @api.exception_handler(HttpError)
    def on_http_error(request, error):
        return respond(error.status_code, str(error))


add_error_handlers(
    api, problem_response, scheme="Bearer",
    how_to_authenticate="Authenticate with `Authorization: Bearer <token>` or a signed-in session.",
)

api.add_router("/", library.router)
api.add_router("/", jobs.router)
api.add_router("/", images.router)
api.add_router("/", account.router)
api.add_router("/", events.router)
