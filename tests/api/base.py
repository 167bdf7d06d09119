import json
from functools import cache
from unittest import mock

from openapi_core import Config, OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse

from studio.accounts.models import Role
from studio.api.api import api
from studio.api.problems import PROBLEM_CONTENT_TYPE
from studio.api.tokens import token_create
from tests.base import StudioTestCase


@cache
def openapi_contract():
    """The API's published schema (as /api/v1/openapi.json serves it), for openapi-core."""
    config = Config(extra_media_type_deserializers={PROBLEM_CONTENT_TYPE: json.loads})
    return OpenAPI.from_dict(json.loads(json.dumps(api.get_openapi_schema())), config=config)


class ApiTestCase(StudioTestCase):
    """StudioTestCase with helpers to call /api/v1/ with a token. Every answer is checked
    against the published OpenAPI schema: its status is documented and its body matches."""

    def token(self, user, *, team=None, role=None, projects=(), days=30):
        team = team or (self.other_team if user == self.outsider else self.team)
        role = role or team.role_of(user) or Role.VIEWER
        return token_create(
            user=user, team=team, name="test", role=role, days=days, projects=projects
        )[1]

    def api(self, method, path, secret=None, *, json=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        call = getattr(self.client, method)
        if json is not None:
            kwargs.update(data=json, content_type="application/json")
        with mock.patch("generation.services.enqueue_generation"):
            with self.captureOnCommitCallbacks(execute=True):
                response = call(f"/api/v1{path}", headers=headers, **kwargs)
        self.assert_matches_the_schema(response)
        return response

    def assert_matches_the_schema(self, response):
        openapi_contract().validate_response(
            DjangoOpenAPIRequest(response.wsgi_request), DjangoOpenAPIResponse(response)
        )

    def assert_problem(self, response, status, field=None):
        self.assertEqual(response.status_code, status, response.content)
        self.assertEqual(response["Content-Type"], "application/problem+json")
        body = response.json()
        self.assertEqual(body["status"], status)
        if field is not None:
            self.assertIn(field, [error["field"] for error in body.get("errors", [])], body)
        return body
