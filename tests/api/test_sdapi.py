"""AUTOMATIC1111's API on /sdapi/v1/, driven over real HTTP against the live test server,
with the `webuiapi` client from PyPI and with plain requests: generation through the
studio's form (bounds, prompt policy, quotas), A1111's response shapes, HTTP Basic and
Bearer tokens, the token's default model, progress and interrupt, and refusals as 4xx JSON
naming the field."""

import base64
import io
import json
import threading
from datetime import timedelta
from unittest import mock

import pytest
import requests
import webuiapi
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from PIL import Image as PILImage

from generation.execution import job_execute
from generation.models import (
    DiffusionModel,
    FluxTransformer,
    GenerationJob,
    JobStatus,
    ModelFamily,
    ModelKind,
)
from studio.api.models import ApiToken
from studio.moderation.models import Policy
from studio.quotas.models import TeamLimits
from tests.api.live import LiveApiTestCase
from tests.base import make_job
from tests.lora_builders import make_lora

CONTROLNET_ARGS = "alwayson_scripts.controlnet.args"


def png_base64(size=(64, 64), colour=(30, 120, 200)):
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class SdapiTestCase(LiveApiTestCase):
    def setUp(self):
        super().setUp()
        self.secret = self.token(self.editor)

    def call(self, method, path, secret=None, *, auth=None, **kwargs):
        headers = {"Authorization": f"Bearer {secret or self.secret}"} if auth is None else {}
        headers.update(kwargs.pop("headers", {}))
        return requests.request(method, f"{self.live_server_url}/sdapi/v1{path}",
                                headers=headers, auth=auth, timeout=30, **kwargs)

    def txt2img(self, secret=None, **fields):
        body = {"prompt": "a lighthouse at dusk", "steps": 6, "width": 64, "height": 64,
                **fields}
        return self.call("post", "/txt2img", secret, json=body)

    def run_jobs_in_worker_threads(self):
        """Dispatched jobs run by the worker's own code, each in a thread of its own as a GPU
        worker would, while the request waits; the threads, to join."""
        threads = []

        def run_in_a_worker_thread(job_id):
            def work():
                with mock.patch("generation.execution.publish"):
                    job_execute(job_id=job_id)
                connection.close()

            threads.append(threading.Thread(target=work))
            threads[-1].start()

        self.worker.side_effect = run_in_a_worker_thread
        return threads

    def assert_refused(self, response, status, field=None):
        self.assertEqual(response.status_code, status, response.text)
        body = response.json()
        self.assertIn("detail", body)
        if field is not None:
            self.assertIn(field, [error["field"] for error in body["errors"]], body)
        return body


class Txt2ImgTests(SdapiTestCase):
    def test_the_webuiapi_client_generates_with_basic_auth(self):
        client = webuiapi.WebUIApi(baseurl=f"{self.live_server_url}/sdapi/v1")
        client.set_auth("carol", self.secret)
        result = client.txt2img(
            prompt="a lighthouse at dusk", negative_prompt="fog", seed=77, steps=12,
            cfg_scale=6.5, width=128, height=64, batch_size=2, sampler_name="DPM++ 2M",
            scheduler="Karras",
        )
        job = GenerationJob.objects.get()
        self.assertEqual((job.created_by, job.project, job.model), (self.editor, self.project,
                                                                   self.model))
        self.assertEqual((job.steps, job.guidance_scale, job.width, job.height, job.batch_size),
                         (12, 6.5, 128, 64, 2))
        self.assertEqual((job.sampler, job.seed, job.negative_prompt),
                         ("DPM++ 2M Karras", 77, "fog"))
        self.assertEqual([image.size for image in result.images], [(128, 64), (128, 64)])
        self.assertEqual(result.info["all_seeds"], [77, 78])
        self.assertEqual(result.info["sd_model_name"], "tiny-sd15")
        # The PNGs carry the infotext that `info.infotexts` and the gallery hold.
        self.assertEqual(result.images[0].info["parameters"], result.info["infotexts"][0])
        self.assertIn("Steps: 12, Sampler: DPM++ 2M, Schedule type: Karras",
                      result.info["infotexts"][0])
        self.assertEqual(result.parameters["prompt"], "a lighthouse at dusk")

    def test_a1111_fields_map_to_the_recipe_and_the_rest_are_listed(self):
        response = self.txt2img(
            n_iter=2, seed=5, subseed=9, subseed_strength=0.3, enable_hr=True, hr_scale=2,
            hr_second_pass_steps=3, denoising_strength=0.4, hr_upscaler="Latent",
            override_settings={"CLIP_stop_at_last_layers": 2, "sd_vae": "kl-f8"},
            restore_faces=True, tiling=False, eta=1.0, styles=["noir"],
        )
        self.assertEqual(response.status_code, 200, response.text)
        first, second = GenerationJob.objects.order_by("pk")
        self.assertEqual((first.seed, second.seed), (5, 6))
        self.assertEqual((first.variation_seed, first.variation_strength), (9, 0.3))
        self.assertEqual(first.clip_skip, 2)
        self.assertEqual((first.hires_scale, first.hires_steps, first.hires_strength),
                         (2.0, 3, 0.4))
        info = json.loads(response.json()["info"])
        self.assertEqual(len(response.json()["images"]), 2)
        self.assertEqual(info["job_ids"], [first.pk, second.pk])
        self.assertEqual(
            sorted(info["not_applied"]),
            ["hr_upscaler: Latent (the hires fix uses Lanczos)", "override_settings.sd_vae: kl-f8",
             "restore_faces: true", 'styles: ["noir"]'],
        )

    def test_the_token_must_be_able_to_generate(self):
        self.assert_refused(self.txt2img(self.token(self.viewer)), 403)
        self.assertFalse(GenerationJob.objects.exists())

    def test_jobs_go_to_the_tokens_project(self):
        from studio.accounts.models import Project

        covers = Project.objects.create(team=self.team, name="Covers")
        response = self.txt2img(self.token(self.editor, projects=[covers]))
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(GenerationJob.objects.get().project, covers)


class ExtensionTests(SdapiTestCase):
    def test_controlnet_canny_and_ip_adapter_units(self):
        canny = DiffusionModel.objects.create(name="canny-sd15", source="/models/canny",
                                              kind=ModelKind.CONTROLNET)
        adapter = DiffusionModel.objects.create(name="ip-adapter-sd15", source="/models/ipa",
                                                kind=ModelKind.IP_ADAPTER)
        units = [
            {"enabled": True, "module": "canny", "model": "canny-sd15 [a1b2c3d4]",
             "image": png_base64(), "weight": 0.8, "threshold_a": 90, "threshold_b": 180},
            {"enabled": False, "module": "depth", "model": "ignored"},
            {"module": "ip-adapter_clip_sd15", "model": "ip-adapter-sd15",
             "image": {"image": png_base64(colour=(200, 10, 10))}, "weight": 0.5},
        ]
        response = self.txt2img(alwayson_scripts={"controlnet": {"args": units}})
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        self.assertEqual((job.control_model, job.control_scale), (canny, 0.8))
        self.assertEqual((job.control_low_threshold, job.control_high_threshold), (90, 180))
        self.assertEqual((job.ip_adapter_model, job.ip_adapter_scale), (adapter, 0.5))
        self.assertIn("ControlNet 0: \"Module: canny", json.loads(response.json()["info"])
                      ["infotexts"][0])

    def test_a_unit_without_module_or_model_is_a_flux_control_checkpoints_image(self):
        canny = DiffusionModel.objects.create(
            name="flux1-canny-dev", source="/models/flux-canny", family=ModelFamily.FLUX1,
            flux_transformer=FluxTransformer.CONTROL,
        )
        unit = {"module": "none", "model": "None", "image": png_base64()}
        response = self.txt2img(
            cfg_scale=1, override_settings={"sd_model_checkpoint": "flux1-canny-dev"},
            alwayson_scripts={"controlnet": {"args": [unit]}},
        )
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        self.assertEqual((job.model, job.control_model), (canny, None))
        self.assertTrue(job.control_upload)
        # Any other checkpoint needs a ControlNet model for it: refused, naming the unit.
        response = self.txt2img(alwayson_scripts={"controlnet": {"args": [unit]}})
        self.assert_refused(response, 422, CONTROLNET_ARGS)
        self.assertEqual(GenerationJob.objects.count(), 1)
        # Named first, the control model is still no request's default: that is the first
        # model that makes images from text alone.
        self.assertEqual(self.txt2img().status_code, 200)
        self.assertEqual(GenerationJob.objects.latest("pk").model, self.model)

    def test_a_lora_in_the_prompt_is_the_tokens_teams(self):
        make_lora(self.team, self.editor, "paper_cut")
        make_lora(self.other_team, self.outsider, "hers")
        response = self.txt2img(prompt="a fox <lora:paper_cut:0.7>")
        self.assertEqual(response.status_code, 200, response.text)
        [used] = GenerationJob.objects.get().job_loras.all()
        self.assertEqual((used.name, used.weight, used.in_prompt), ("paper_cut", 0.7, True))
        response = self.txt2img(self.token(self.outsider), prompt="a fox <lora:paper_cut:1>")
        self.assert_refused(response, 422, "prompt")
        self.assertEqual(GenerationJob.objects.count(), 1)


class RealWorkerTests(SdapiTestCase):
    """The job run by the worker's own code on the tiny model, in a thread of its own as a
    GPU worker would, while the request waits."""

    @pytest.fixture(autouse=True)
    def tiny_model(self, tiny_model_dir):
        self.tiny_model_dir = tiny_model_dir

    def test_txt2img_waits_for_a_real_run(self):
        DiffusionModel.objects.filter(pk=self.model.pk).update(source=str(self.tiny_model_dir))
        threads = self.run_jobs_in_worker_threads()
        client = webuiapi.WebUIApi(baseurl=f"{self.live_server_url}/sdapi/v1")
        client.set_auth("carol", self.secret)
        result = client.txt2img(prompt="a red fox", seed=1234, steps=3, width=64, height=64,
                                sampler_name="Euler")
        for thread in threads:
            thread.join()
        self.assertEqual(result.images[0].size, (64, 64))
        self.assertTrue(result.images[0].info["parameters"].startswith(
            "a red fox\nSteps: 3, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, "
            "Seed: 1234, Size: 64x64"))
        self.assertEqual(GenerationJob.objects.get().status, JobStatus.FINISHED)


class RefusalTests(SdapiTestCase):
    def test_bad_input_is_a_422_naming_the_a1111_field(self):
        cases = [
            ({"steps": 100_000}, "steps"),
            ({"cfg_scale": "lots"}, "cfg_scale"),
            ({"width": 100}, "width"),
            ({"n_iter": 0}, "n_iter"),
            ({"sampler_name": "Nope"}, "sampler_name"),
            ({"override_settings": {"sd_model_checkpoint": "nope"}},
             "override_settings.sd_model_checkpoint"),
            ({"alwayson_scripts": {"controlnet": {"args": [{"module": "depth", "model": "x"}]}}},
             "alwayson_scripts.controlnet.args.0.module"),
            ({"alwayson_scripts": {"controlnet": {"args": [{"module": "canny", "model": "x"}]}}},
             "alwayson_scripts.controlnet.args.0.model"),
        ]
        for fields, field in cases:
            with self.subTest(field=field):
                self.assert_refused(self.txt2img(**fields), 422, field)
        self.assertFalse(GenerationJob.objects.exists())

    def test_malformed_bodies_are_4xx_json(self):
        for body, field in (([], None), ({"override_settings": "x"}, "override_settings"),
                            ({"alwayson_scripts": {"controlnet": "x"}}, CONTROLNET_ARGS),
                            ({"alwayson_scripts": {"controlnet": {"args": "x"}}}, CONTROLNET_ARGS),
                            ({"seed": "random"}, "seed"), ({"prompt": ["a", "b"]}, "prompt")):
            with self.subTest(body=body):
                self.assert_refused(self.call("post", "/txt2img", json=body), 422, field)
        response = self.call("post", "/txt2img", data="{not json",
                             headers={"Content-Type": "application/json"})
        self.assertEqual(response.status_code // 100, 4, response.text)
        self.assertFalse(GenerationJob.objects.exists())

    def test_img2img_needs_a_decodable_image(self):
        for images, status in (([], 422), (["not base64!"], 422),
                               ([base64.b64encode(b"plain text").decode()], 422)):
            response = self.call("post", "/img2img", json={"prompt": "x", "init_images": images})
            self.assert_refused(response, status, "init_images")
        self.assertFalse(GenerationJob.objects.exists())

    def test_prompt_policy_and_quota_refuse_as_in_the_studio(self):
        Policy.objects.create(team=self.team, blocked_terms="clown")
        self.assert_refused(self.txt2img(prompt="a sad clown"), 422, "prompt")
        TeamLimits.objects.create(team=self.team, max_active_images=1)
        make_job(self.project, self.editor, self.model)  # still queued
        response = self.txt2img()
        self.assert_refused(response, 429)
        self.assertIn("Retry-After", response.headers)
        self.assertEqual(GenerationJob.objects.count(), 1)

    def test_authentication(self):
        response = requests.post(f"{self.live_server_url}/sdapi/v1/txt2img", json={}, timeout=30)
        self.assert_refused(response, 401)
        self.assertEqual(response.headers["WWW-Authenticate"], "Basic")
        self.assert_refused(self.call("get", "/sd-models", auth=("dave", self.secret)), 401)
        self.assert_refused(self.call("get", "/sd-models", "stu_unknown"), 401)
        self.assertEqual(self.call("get", "/sd-models", auth=("carol", self.secret)).status_code,
                         200)

    @override_settings(STUDIO_API_WAIT_SECONDS=0.3)
    def test_a_job_past_the_wait_is_canceled_with_a_504(self):
        self.worker.side_effect = None  # no worker takes it
        self.assert_refused(self.txt2img(), 504)
        job = GenerationJob.objects.get()
        self.assertEqual(job.status, JobStatus.CANCELED)


class Img2ImgTests(SdapiTestCase):
    def test_a_mask_makes_it_inpaint(self):
        response = self.call("post", "/img2img", json={
            "prompt": "a red door", "init_images": [png_base64()], "denoising_strength": 0.55,
            "mask": png_base64(colour=(255, 255, 255)), "width": 64, "height": 64,
            "mask_blur": 4, "inpainting_fill": 1,
        })
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        self.assertEqual((job.mode, job.strength), ("inpaint", 0.55))
        body = response.json()
        self.assertIsNone(body["parameters"]["init_images"])
        self.assertEqual(json.loads(body["info"])["not_applied"], ["inpainting_fill: 1"])

    def test_without_a_mask_it_is_img2img(self):
        response = self.call("post", "/img2img", json={
            "prompt": "a red door", "init_images": [f"data:image/png;base64,{png_base64()}"],
        })
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(GenerationJob.objects.get().mode, "img2img")


class LibraryAndOptionsTests(SdapiTestCase):
    def test_models_samplers_schedulers_upscalers(self):
        client = webuiapi.WebUIApi(baseurl=f"{self.live_server_url}/sdapi/v1")
        client.set_auth("carol", self.secret)
        [model] = client.get_sd_models()
        self.assertEqual((model["model_name"], model["filename"]),
                         ("tiny-sd15", "/models/tiny-sd15"))
        self.assertIn("DPM++ 2M Karras", [sampler["name"] for sampler in client.get_samplers()])
        schedulers = self.call("get", "/schedulers").json()
        self.assertEqual([item["label"] for item in schedulers],
                         ["Automatic", "Uniform", "Karras", "Simple"])
        self.assertEqual([item["name"] for item in self.call("get", "/upscalers").json()],
                         ["None", "Lanczos"])

    def test_the_openapi_schema_lists_every_route(self):
        schema = requests.get(f"{self.live_server_url}/sdapi/v1/openapi.json", timeout=30).json()
        for route in ("txt2img", "img2img", "progress", "interrupt", "sd-models", "samplers",
                      "schedulers", "loras", "embeddings", "options", "png-info", "upscalers"):
            self.assertIn(f"/sdapi/v1/{route}", schema["paths"])

    def test_options_set_the_tokens_default_model(self):
        second = DiffusionModel.objects.create(name="second", source="/models/second",
                                               default_width=64, default_height=64)
        client = webuiapi.WebUIApi(baseurl=f"{self.live_server_url}/sdapi/v1")
        client.set_auth("carol", self.secret)
        self.assertEqual(client.get_options()["sd_model_checkpoint"], "second")
        client.set_options({"sd_model_checkpoint": "tiny-sd15", "samples_format": "jpg"})
        self.assertEqual(client.get_options()["sd_model_checkpoint"], "tiny-sd15")
        self.assertEqual(ApiToken.objects.get(user=self.editor).default_model, self.model)
        self.assertEqual(self.txt2img().status_code, 200)
        self.assertEqual(GenerationJob.objects.get().model, self.model)
        self.assertNotEqual(second, self.model)
        response = self.call("post", "/options", json={"sd_model_checkpoint": "missing"})
        self.assert_refused(response, 422, "sd_model_checkpoint")

    def test_loras_and_embeddings_are_the_tokens_teams(self):
        make_lora(self.team, self.editor, "paper_cut")
        make_lora(self.other_team, self.outsider, "hers")
        self.assertEqual([lora["name"] for lora in self.call("get", "/loras").json()],
                         ["paper_cut"])
        hers = self.call("get", "/loras", self.token(self.outsider)).json()
        self.assertEqual([lora["name"] for lora in hers], ["hers"])
        self.assertEqual(self.call("get", "/embeddings").json(), {"loaded": {}, "skipped": {}})

    def test_png_info_reads_a_generated_image(self):
        image = self.txt2img(steps=7).json()["images"][0]
        body = self.call("post", "/png-info", json={"image": image}).json()
        self.assertEqual(body["info"], GenerationJob.objects.get().images.get().parameters)
        self.assertEqual(body["parameters"]["steps"], 7)
        self.assertEqual(self.call("post", "/png-info", json={"image": png_base64()}).json(),
                         {"info": "", "items": {}, "parameters": {}})
        response = self.call("post", "/png-info", json={"image": "@@"})
        self.assert_refused(response, 422, "image")


class ProgressTests(SdapiTestCase):
    def setUp(self):
        super().setUp()
        self.running = make_job(self.project, self.editor, self.model, steps=10,
                                status=JobStatus.RUNNING, progress_step=5,
                                started_at=timezone.now() - timedelta(seconds=10))

    def test_progress_of_the_callers_running_job(self):
        body = self.call("get", "/progress").json()
        self.assertEqual(body["progress"], 0.5)
        self.assertAlmostEqual(body["eta_relative"], 10, delta=2)
        self.assertEqual((body["state"]["sampling_step"], body["state"]["sampling_steps"]),
                         (5, 10))
        self.assertEqual(body["state"]["job"], f"job {self.running.pk}")

    def test_the_latest_preview_is_the_current_image(self):
        self.assertIsNone(self.call("get", "/progress").json()["current_image"])
        buffer = io.BytesIO()
        PILImage.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        GenerationJob.previews_keep({self.running.pk: f"data:image/jpeg;base64,{encoded}"})
        body = self.call("get", "/progress").json()
        self.assertEqual(body["current_image"], encoded)
        preview = PILImage.open(io.BytesIO(base64.b64decode(body["current_image"])))
        self.assertEqual(preview.size, (8, 8))
        skipped = self.call("get", "/progress", params={"skip_current_image": "true"}).json()
        self.assertIsNone(skipped["current_image"])

    def test_other_teams_and_other_users_jobs_are_not_theirs(self):
        for secret in (self.token(self.outsider), self.token(self.owner)):
            body = self.call("get", "/progress", secret).json()
            self.assertEqual((body["progress"], body["state"]["job_count"]), (0, 0))
            self.assertEqual(self.call("post", "/interrupt", secret).status_code, 200)
        self.running.refresh_from_db()
        self.assertEqual(self.running.status, JobStatus.RUNNING)
        self.assertIsNone(self.running.cancel_requested_at)

    def test_interrupt_stops_the_callers_jobs(self):
        queued = make_job(self.project, self.editor, self.model)
        self.assertEqual(self.call("post", "/interrupt").status_code, 200)
        queued.refresh_from_db()
        self.running.refresh_from_db()
        self.assertEqual(queued.status, JobStatus.CANCELED)
        self.assertIsNotNone(self.running.cancel_requested_at)
