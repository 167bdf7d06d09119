"""FLUX.1 and SD 3.x models through AUTOMATIC1111's API (/sdapi/v1/), with Forge's fields:
FLUX.1's guidance as `distilled_cfg_scale` beside a CFG scale of 1, the flow samplers on
Forge's Simple schedule, and refusals naming Forge's field; over real HTTP against the live
test server with its stand-in worker."""

import base64
import io
import json

import pytest
from PIL import Image as PILImage

from generation.choices import ModelFamily
from generation.models import DiffusionModel, GenerationJob, JobStatus
from gpu_workers.samplers import FLOW_SAMPLERS
from studio.accounts.models import Role
from tests.api.test_sdapi import SdapiTestCase, png_base64


class FlowSdapiTestCase(SdapiTestCase):
    def setUp(self):
        super().setUp()
        self.flux = DiffusionModel.objects.create(
            name="tiny-flux", source="/models/tiny-flux", family=ModelFamily.FLUX1,
            default_width=64, default_height=64, default_guidance_scale=3.5,
        )
        self.sd3 = DiffusionModel.objects.create(
            name="tiny-sd3", source="/models/tiny-sd3", family=ModelFamily.SD3,
            default_width=64, default_height=64, default_guidance_scale=5.0,
        )

    def txt2img_on(self, model, secret=None, **fields):
        return self.txt2img(secret, override_settings={"sd_model_checkpoint": model.name},
                            **fields)


class FluxTests(FlowSdapiTestCase):
    def test_distilled_cfg_scale_is_the_jobs_guidance_as_forge_reports_it(self):
        response = self.txt2img_on(self.flux, cfg_scale=1, distilled_cfg_scale=2.5,
                                   sampler_name="Euler", scheduler="Simple", seed=11)
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        self.assertEqual((job.model, job.guidance_scale, job.sampler, job.shift),
                         (self.flux, 2.5, "Euler", None))
        body = response.json()
        info = json.loads(body["info"])
        self.assertEqual((info["cfg_scale"], info["distilled_cfg_scale"], info["shift"]),
                         (1, 2.5, None))
        self.assertEqual(info["not_applied"], [])
        self.assertIn("CFG scale: 1, Distilled CFG Scale: 2.5, Seed: 11", info["infotexts"][0])
        self.assertEqual((body["parameters"]["cfg_scale"],
                          body["parameters"]["distilled_cfg_scale"]), (1, 2.5))

    def test_left_out_the_guidance_is_the_models(self):
        response = self.txt2img_on(self.flux, sampler_name="DPM++ 2M")
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        # Forge's Automatic schedule of DPM++ 2M (Karras) is not what a flow model runs.
        self.assertEqual((job.guidance_scale, job.sampler), (3.5, "DPM++ 2M"))
        self.assertEqual(json.loads(response.json()["info"])["distilled_cfg_scale"], 3.5)

    def test_img2img_takes_the_distilled_guidance(self):
        response = self.call("post", "/img2img", json={
            "prompt": "a red door", "init_images": [png_base64()], "denoising_strength": 0.6,
            "width": 64, "height": 64, "distilled_cfg_scale": 4,
            "override_settings": {"sd_model_checkpoint": self.flux.name},
        })
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        self.assertEqual((job.mode, job.guidance_scale, job.strength), ("img2img", 4.0, 0.6))

    def test_a_hires_guidance_of_its_own_is_reported(self):
        response = self.txt2img_on(self.flux, distilled_cfg_scale=3, enable_hr=True,
                                   hr_scale=2, hr_distilled_cfg=5)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(json.loads(response.json()["info"])["not_applied"],
                         ["hr_distilled_cfg: 5 (the hires pass runs the first pass's "
                          "distilled_cfg_scale)"])
        self.assertEqual(GenerationJob.objects.get().hires_scale, 2.0)


class Sd3Tests(FlowSdapiTestCase):
    def test_cfg_scale_is_its_guidance_and_other_schedules_are_reported(self):
        response = self.txt2img_on(self.sd3, cfg_scale=4.5, sampler_name="DPM++ 2M",
                                   scheduler="Karras")
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        self.assertEqual((job.guidance_scale, job.sampler), (4.5, "DPM++ 2M"))
        info = json.loads(response.json()["info"])
        self.assertEqual((info["cfg_scale"], info["distilled_cfg_scale"]), (4.5, None))
        self.assertEqual(info["not_applied"],
                         ["scheduler: Karras (Stable Diffusion 3.x models run Simple)"])
        self.assertIn("CFG scale: 4.5, Seed:", info["infotexts"][0])
        self.assertNotIn("Distilled", info["infotexts"][0])


class FlowRefusalTests(FlowSdapiTestCase):
    def test_bad_input_is_a_422_naming_forges_field_and_nothing_is_queued(self):
        cases = [
            (self.flux, {"cfg_scale": 7}, "cfg_scale"),
            (self.flux, {"cfg_scale": 0}, "cfg_scale"),
            (self.flux, {"distilled_cfg_scale": 100}, "distilled_cfg_scale"),
            (self.flux, {"distilled_cfg_scale": "lots"}, "distilled_cfg_scale"),
            (self.flux, {"sampler_name": "Euler a"}, "sampler_name"),
            (self.flux, {"width": 72}, "width"),
            (self.sd3, {"distilled_cfg_scale": 3.5}, "distilled_cfg_scale"),
            (self.sd3, {"sampler_name": "DDIM"}, "sampler_name"),
            (self.model, {"distilled_cfg_scale": 3.5}, "distilled_cfg_scale"),
        ]
        for model, fields, field in cases:
            with self.subTest(model=model.name, **fields):
                self.assert_refused(self.txt2img_on(model, **fields), 422, field)
        self.assertFalse(GenerationJob.objects.exists())

    def test_the_refusals_say_what_to_send(self):
        body = self.assert_refused(self.txt2img_on(self.flux, cfg_scale=3.5), 422, "cfg_scale")
        self.assertIn("send cfg_scale 1 or leave it out, and the guidance as "
                      "distilled_cfg_scale", body["detail"])
        body = self.assert_refused(self.txt2img_on(self.sd3, distilled_cfg_scale=3), 422,
                                   "distilled_cfg_scale")
        self.assertIn("only FLUX.1 models take a distilled guidance", body["detail"])
        # The detail names Forge's field too, not the recipe's guidance_scale.
        body = self.assert_refused(self.txt2img_on(self.flux, distilled_cfg_scale=100), 422,
                                   "distilled_cfg_scale")
        self.assertTrue(body["detail"].startswith("distilled_cfg_scale: "), body["detail"])
        self.assertNotIn("guidance_scale", body["detail"])
        body = self.assert_refused(self.txt2img_on(self.flux, sampler_name="Euler a"), 422,
                                   "sampler_name")
        self.assertIn("FLUX.1 models run Euler or DPM++ 2M here", body["detail"])

    def test_a_model_the_caller_may_not_use_is_refused(self):
        DiffusionModel.objects.filter(pk=self.flux.pk).update(min_role=Role.ADMIN)
        self.assert_refused(self.txt2img_on(self.flux, distilled_cfg_scale=3), 422,
                            "override_settings.sd_model_checkpoint")
        self.assert_refused(self.txt2img_on(self.sd3, self.token(self.viewer)), 403)
        self.assertFalse(GenerationJob.objects.exists())
        secret = self.token(self.admin)
        self.assertEqual(self.txt2img_on(self.flux, secret, distilled_cfg_scale=3).status_code,
                         200)
        self.assertEqual(GenerationJob.objects.get().created_by, self.admin)


class FlowLibraryTests(FlowSdapiTestCase):
    def test_flow_models_samplers_and_schedule_are_listed(self):
        names = [model["model_name"] for model in self.call("get", "/sd-models").json()]
        self.assertEqual(names, ["tiny-flux", "tiny-sd15", "tiny-sd3"])
        samplers = [sampler["name"] for sampler in self.call("get", "/samplers").json()]
        self.assertLessEqual(set(FLOW_SAMPLERS), set(samplers))
        schedulers = {item["name"]: item["label"] for item in self.call("get", "/schedulers")
                      .json()}
        self.assertEqual(schedulers["simple"], "Simple")

    def test_png_info_reads_a_flux_image(self):
        image = self.txt2img_on(self.flux, distilled_cfg_scale=2).json()["images"][0]
        body = self.call("post", "/png-info", json={"image": image}).json()
        self.assertIn("Distilled CFG Scale: 2", body["info"])
        self.assertEqual(body["parameters"]["guidance_scale"], 2.0)
        decoded = PILImage.open(io.BytesIO(base64.b64decode(image)))
        self.assertEqual(decoded.size, (64, 64))


class FluxRealWorkerTests(FlowSdapiTestCase):
    """A FLUX.1 job run by the worker's own code on the tiny model, in a thread of its own
    as a GPU worker would, while the request waits."""

    @pytest.fixture(autouse=True)
    def tiny_model(self, tiny_flux):
        self.tiny_flux = tiny_flux

    def test_the_workers_image_carries_forges_infotext(self):
        DiffusionModel.objects.filter(pk=self.flux.pk).update(source=str(self.tiny_flux))
        threads = self.run_jobs_in_worker_threads()
        response = self.txt2img_on(self.flux, prompt="a red fox", seed=1234, steps=3,
                                   cfg_scale=1, distilled_cfg_scale=2.5,
                                   sampler_name="Euler", scheduler="Simple")
        for thread in threads:
            thread.join()
        self.assertEqual(response.status_code, 200, response.text)
        job = GenerationJob.objects.get()
        self.assertEqual((job.status, job.guidance_scale), (JobStatus.FINISHED, 2.5))
        image = PILImage.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
        self.assertEqual(image.size, (64, 64))
        infotext = image.info["parameters"]
        self.assertTrue(infotext.startswith("a red fox\nSteps: 3, Sampler: Euler, "), infotext)
        self.assertIn("CFG scale: 1, Distilled CFG Scale: 2.5, Seed: 1234, Size: 64x64",
                      infotext)
