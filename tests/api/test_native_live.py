"""/api/v1 over real HTTP against the live test server, as a script would drive it: create
(retried with its Idempotency-Key), follow the job to its end, fetch its image with and
without metadata, refusals as problem+json; each answer checked against the published
OpenAPI schema."""

import io

import requests
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from PIL import Image as PILImage

from generation.models import GenerationJob
from generation.parameters_import import parse_a1111_infotext
from tests.api.base import openapi_contract
from tests.api.live import LiveApiTestCase


class NativeApiLiveTests(LiveApiTestCase):
    def call(self, method, path, secret, **kwargs):
        response = requests.request(
            method, f"{self.live_server_url}/api/v1{path}",
            headers={"Authorization": f"Bearer {secret}", **kwargs.pop("headers", {})},
            timeout=30, **kwargs,
        )
        openapi_contract().validate_response(
            RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
        )
        return response

    def test_a_script_queues_follows_and_downloads(self):
        secret = self.token(self.editor)
        recipe = {"prompt": "a lighthouse at dusk", "model": self.model.pk, "steps": 4,
                  "guidance_scale": 7.0, "width": 64, "height": 64, "seed": 5}
        key = {"Idempotency-Key": "run-1"}
        path = f"/projects/{self.project.pk}/jobs"
        created = self.call("post", path, secret, json=recipe, headers=key)
        self.assertEqual(created.status_code, 201, created.text)
        self.assertEqual(created.json()["jobs"][0]["status"], "queued")
        again = self.call("post", path, secret, json=recipe, headers=key)
        # The same job, as it is now: the stand-in worker finished it when it was queued.
        running = {"status", "step", "progress_percent", "queue_position", "started_at",
                   "finished_at", "image_ids"}
        self.assertEqual(
            [{k: v for k, v in job.items() if k not in running} for job in again.json()["jobs"]],
            [{k: v for k, v in job.items() if k not in running}
             for job in created.json()["jobs"]],
        )
        self.assertEqual(GenerationJob.objects.count(), 1)

        [job] = created.json()["jobs"]
        body = self.call("get", f"/jobs/{job['id']}", secret).json()
        self.assertEqual(body["status"], "finished")  # the stand-in worker is quick
        [image_id] = body["image_ids"]
        png = self.call("get", f"/images/{image_id}/file", secret)
        self.assertEqual(png.headers["Content-Type"], "image/png")
        parameters = PILImage.open(io.BytesIO(png.content)).info["parameters"]
        self.assertEqual(parse_a1111_infotext(parameters).values["seed"], 5)
        bare = self.call("get", f"/images/{image_id}/file", secret, params={"metadata": "false"})
        self.assertNotIn("parameters", PILImage.open(io.BytesIO(bare.content)).info)

    def test_refusals_are_problems_naming_the_field(self):
        secret = self.token(self.editor)
        path = f"/projects/{self.project.pk}/jobs"
        response = self.call("post", path, secret, json={"prompt": "x", "model": self.model.pk,
                                                          "steps": 0})
        self.assertEqual(response.status_code, 422)
        self.assertEqual(response.headers["Content-Type"], "application/problem+json")
        self.assertIn("steps", [error["field"] for error in response.json()["errors"]])
        theirs = self.call("post", path, self.token(self.outsider),
                           json={"prompt": "x", "model": self.model.pk})
        self.assertEqual(theirs.status_code, 404)
        self.assertEqual(self.call("get", "/teams", "not-a-token").status_code, 401)
        self.assertFalse(GenerationJob.objects.exists())
