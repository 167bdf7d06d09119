"""The schema is the contract: /api/openapi.json (the current version's) is a valid OpenAPI 3
document, every refusal is documented in it, and ApiTestCase checks every answer the API
tests get against it (so a route whose answers drift from its schema fails its tests)."""

from openapi_core.validation.response.exceptions import DataValidationError

from tests.api.base import ApiTestCase


class OpenApiTests(ApiTestCase):
    def test_the_schema_and_the_docs_are_where_clients_look(self):
        response = self.client.get("/api/openapi.json", follow=True)
        self.assertEqual(response.redirect_chain[-1][0], "/api/v1/openapi.json")
        schema = response.json()
        self.assertTrue(schema["openapi"].startswith("3."))
        for path in ("/api/v1/projects/{project_id}/jobs", "/api/v1/jobs/{job_id}",
                     "/api/v1/images/{image_id}/file", "/api/v1/teams/{team_id}/usage"):
            self.assertIn(path, schema["paths"])
        self.assertRedirects(self.client.get("/api/docs/"), "/api/v1/docs",
                             fetch_redirect_response=False)
        self.assertEqual(self.client.get("/api/v1/docs").status_code, 200)

    def test_every_operation_documents_its_refusals(self):
        schema = self.client.get("/api/v1/openapi.json").json()
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                with self.subTest(operation=f"{method} {path}"):
                    refusal = operation["responses"]["4XX"]["content"]
                    self.assertEqual(refusal["application/problem+json"]["schema"]["$ref"],
                                     "#/components/schemas/Problem")

    def test_an_answer_that_drifts_from_the_schema_is_caught(self):
        secret = self.token(self.editor)
        response = self.api("get", "/teams", secret)  # checked, and valid
        self.assertEqual(response.status_code, 200)
        response.content = b'[{"id": "one", "name": 3}]'
        with self.assertRaises(DataValidationError):
            self.assert_matches_the_schema(response)
