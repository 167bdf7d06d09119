"""OpenAI's Images API on /v1/, driven with the official `openai` package against the live
test server: generations, edits (transparent mask pixels are redrawn: an inpaint),
variations, models; signed image URLs that expire; refusals in OpenAI's error shape (a bad
parameter a 400 naming it, never a 5xx); other teams' and viewers' tokens refused."""

import base64
import io
from unittest import mock

import openai
import requests
from django.core import signing
from django.test import override_settings
from PIL import Image as PILImage

from generation.models import DiffusionModel, GenerationJob
from studio.api.models import ApiToken
from studio.moderation.models import Policy
from tests.api.live import LiveApiTestCase


def png_bytes(size=(64, 64), mode="RGB", colour=(30, 120, 200)):
    buffer = io.BytesIO()
    PILImage.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def half_transparent_mask(size=(64, 64)):
    """Opaque, with its left half transparent: OpenAI redraws the left half."""
    mask = PILImage.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


class OpenAITestCase(LiveApiTestCase):
    def setUp(self):
        super().setUp()
        self.secret = self.token(self.editor)
        self.client_ = self.openai(self.secret)

    def openai(self, secret):
        # No retries: a refusal must show as itself, not as a retried request.
        return openai.OpenAI(api_key=secret, base_url=f"{self.live_server_url}/v1",
                             max_retries=0)


class GenerationTests(OpenAITestCase):
    def test_b64_json_images_through_the_studios_form(self):
        result = self.client_.images.generate(
            prompt="a lighthouse at dusk", n=2, size="128x64", quality="high",
            response_format="b64_json", model="dall-e-3",
        )
        job = GenerationJob.objects.get()
        self.assertEqual((job.created_by, job.model, job.project),
                         (self.editor, self.model, self.project))
        self.assertEqual((job.width, job.height, job.batch_size), (128, 64, 2))
        self.assertEqual(job.steps, round(self.model.default_steps * 1.5))
        self.assertEqual(len(result.data), 2)
        image = PILImage.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
        self.assertEqual(image.size, (128, 64))
        self.assertIn("Steps:", image.info["parameters"])

    def test_a_library_model_by_name_or_the_tokens_default(self):
        second = DiffusionModel.objects.create(name="second", source="/m/second",
                                               default_width=64, default_height=64)
        self.client_.images.generate(prompt="a fox", model="second", size="64x64")
        ApiToken.objects.filter(user=self.editor).update(default_model=self.model)
        self.client_.images.generate(prompt="a fox", size="64x64")
        self.assertEqual([job.model for job in GenerationJob.objects.order_by("pk")],
                         [second, self.model])

    def test_url_responses_are_signed_and_expire(self):
        result = self.client_.images.generate(prompt="a fox", size="64x64",
                                              response_format="url")
        url = result.data[0].url
        response = requests.get(url, timeout=30)  # no token: the signature authorises it
        self.assertEqual((response.status_code, response.headers["Content-Type"]),
                         (200, "image/png"))
        with mock.patch("django.core.signing.time.time", return_value=2**40):
            self.assertEqual(requests.get(url, timeout=30).status_code, 404)
        forged = url.rsplit("/", 1)[0] + "/" + signing.dumps(1, salt="elsewhere")
        self.assertEqual(requests.get(forged, timeout=30).status_code, 404)


class EditAndVariationTests(OpenAITestCase):
    def test_transparent_mask_pixels_are_inpainted(self):
        result = self.client_.images.edit(
            image=("door.png", png_bytes(), "image/png"),
            mask=("mask.png", half_transparent_mask(), "image/png"),
            prompt="a red door", size="64x64",
        )
        self.assertEqual(len(result.data), 1)
        job = GenerationJob.objects.get()
        self.assertEqual(job.mode, "inpaint")
        with job.mask_upload.open("rb") as opened:
            mask = PILImage.open(opened).convert("L")
            self.assertEqual((mask.getpixel((5, 5)), mask.getpixel((60, 5))), (255, 0))

    def test_an_opaque_image_without_a_mask_is_redrawn_whole(self):
        self.client_.images.edit(image=("door.png", png_bytes(), "image/png"),
                                 prompt="a red door", size="64x64")
        self.assertEqual(GenerationJob.objects.get().mode, "img2img")

    def test_an_images_own_transparency_is_the_mask(self):
        image = PILImage.new("RGBA", (64, 64), (30, 120, 200, 255))
        image.paste((0, 0, 0, 0), (0, 0, 64, 16))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.client_.images.edit(image=("cut.png", buffer.getvalue(), "image/png"),
                                 prompt="sky", size="64x64")
        self.assertEqual(GenerationJob.objects.get().mode, "inpaint")

    def test_variations_of_an_image(self):
        result = self.client_.images.create_variation(
            image=("door.png", png_bytes(), "image/png"), n=1, size="64x64"
        )
        self.assertEqual(len(result.data), 1)
        self.assertEqual(GenerationJob.objects.get().mode, "img2img")


class RefusalTests(OpenAITestCase):
    def assert_error(self, call, error_class, param=None):
        with self.assertRaises(error_class) as caught:
            call()
        body = caught.exception.body
        self.assertIn("message", body)
        if param is not None:
            self.assertEqual(body["param"], param)
        return caught.exception

    def test_bad_parameters_are_400s_naming_them(self):
        generate = self.client_.images.generate
        self.assert_error(lambda: generate(prompt="x", size="huge"), openai.BadRequestError,
                          "size")
        self.assert_error(lambda: generate(prompt="x", size="100x100"), openai.BadRequestError,
                          "size")
        self.assert_error(lambda: generate(prompt="x", n=11), openai.BadRequestError, "n")
        self.assert_error(lambda: generate(prompt=""), openai.BadRequestError, "prompt")
        self.assert_error(lambda: generate(prompt="x", model="nope"), openai.NotFoundError,
                          "model")
        mask = ("mask.png", half_transparent_mask((32, 32)), "image/png")
        self.assert_error(
            lambda: self.client_.images.edit(image=("a.png", png_bytes(), "image/png"),
                                             mask=mask, prompt="x"),
            openai.BadRequestError, "mask",
        )
        self.assert_error(
            lambda: self.client_.images.edit(image=("a.png", b"not an image", "image/png"),
                                             prompt="x"),
            openai.BadRequestError, "image",
        )
        self.assertFalse(GenerationJob.objects.exists())

    def test_malformed_bodies_are_400s_not_5xx(self):
        url = f"{self.live_server_url}/v1/images/generations"
        headers = {"Authorization": f"Bearer {self.secret}"}
        for body in ([], {"prompt": "x", "n": "many"}, {"prompt": {"a": 1}},
                     {"prompt": "x", "response_format": "gif"}):
            with self.subTest(body=body):
                response = requests.post(url, json=body, headers=headers, timeout=30)
                self.assertEqual(response.status_code, 400, response.text)
                self.assertIn("message", response.json()["error"])
        response = requests.post(url, data="{oops", timeout=30,
                                 headers={**headers, "Content-Type": "application/json"})
        self.assertEqual(response.status_code // 100, 4, response.text)
        response = requests.post(f"{self.live_server_url}/v1/images/edits", headers=headers,
                                 data={"prompt": "x"}, timeout=30)
        self.assertEqual((response.status_code, response.json()["error"]["param"]),
                         (400, "image"))
        self.assertFalse(GenerationJob.objects.exists())

    def test_prompt_policy_refuses_as_in_the_studio(self):
        Policy.objects.create(team=self.team, blocked_terms="clown")
        self.assert_error(lambda: self.client_.images.generate(prompt="a clown"),
                          openai.BadRequestError, "prompt")

    def test_tokens(self):
        self.assert_error(lambda: self.openai("stu_unknown").models.list(),
                          openai.AuthenticationError)
        self.assert_error(lambda: self.openai(self.token(self.viewer)).images.generate(
            prompt="x", size="64x64"), openai.PermissionDeniedError)
        self.assertFalse(GenerationJob.objects.exists())

    def test_another_teams_token_works_only_in_its_own_team(self):
        hers = self.openai(self.token(self.outsider))
        hers.images.generate(prompt="a fox", size="64x64")
        self.assertEqual(GenerationJob.objects.get().project, self.other_project)

    def test_models_are_those_the_tokens_user_may_use(self):
        DiffusionModel.objects.filter(pk=self.model.pk).update(min_role="owner")
        self.assertEqual([model.id for model in self.client_.models.list()], [])
        self.assert_error(lambda: self.client_.models.retrieve("tiny-sd15"), openai.NotFoundError)
        self.assert_error(lambda: self.client_.images.generate(prompt="x", model="tiny-sd15"),
                          openai.NotFoundError, "model")
        owners = self.openai(self.token(self.owner))
        self.assertEqual([model.id for model in owners.models.list()], ["tiny-sd15"])

    @override_settings(STUDIO_API_WAIT_SECONDS=0.3)
    def test_a_job_past_the_wait_is_a_504_and_canceled(self):
        self.worker.side_effect = None
        self.assert_error(lambda: self.client_.images.generate(prompt="x", size="64x64"),
                          openai.InternalServerError)
        self.assertEqual(GenerationJob.objects.get().status, "canceled")


class ModelTests(OpenAITestCase):
    def test_the_openapi_schema_lists_every_route(self):
        schema = requests.get(f"{self.live_server_url}/v1/openapi.json", timeout=30).json()
        for route in ("images/generations", "images/edits", "images/variations", "models"):
            self.assertIn(f"/v1/{route}", schema["paths"])

    def test_models_list_and_get(self):
        self.assertEqual([model.id for model in self.client_.models.list()], ["tiny-sd15"])
        self.assertEqual(self.client_.models.retrieve("tiny-sd15").owned_by, "studio")
