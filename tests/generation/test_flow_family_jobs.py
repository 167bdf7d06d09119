"""FLUX.1 and SD 3.x jobs (issue #17): the generate form takes a job of every mode for such a
model and refuses, naming the family, what these families can't do in the studio yet; a job runs
end to end in this process on the tiny models and makes plain diffusers' image, a hires fix
job the pipelines' two passes."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from diffusers import (
    FluxImg2ImgPipeline,
    FluxPipeline,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusion3Pipeline,
)
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import job_execute
from generation.forms import MASK_DATA_PREFIX, GenerationForm
from generation.models import DiffusionModel, GenerationJob, JobStatus, ModelFamily, SourceKind
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import StudioTestCase, published_events
from tests.lora_builders import flux_peft_lora_bytes, make_lora


class FlowFamilyFormTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.flux = DiffusionModel.objects.create(
            name="FLUX.1 dev", source="black-forest-labs/FLUX.1-dev", family=ModelFamily.FLUX1
        )
        cls.sd35 = DiffusionModel.objects.create(
            name="SD 3.5 Medium", source="stabilityai/stable-diffusion-3.5-medium",
            family=ModelFamily.SD3,
        )

    def form(self, model, **values):
        data = {"prompt": "a red fox", "model": model.pk, "steps": 4, "guidance_scale": 3.5,
                "width": 64, "height": 64, **values}
        return GenerationForm(data, user=self.editor, project=self.project)

    def test_txt2img_with_a_flow_model_is_taken(self):
        for model in (self.flux, self.sd35):
            with self.subTest(model=model.name):
                self.assertIsNone(model.refusal_reason(self.editor, self.team))
                form = self.form(model, sampler="Euler")
                self.assertTrue(form.is_valid(), form.errors)

    def test_what_the_family_cant_do_yet_is_refused_naming_it(self):
        refused = [
            ({"clip_skip": 2}, "clip_skip", "FLUX.1 models don't support clip skip"),
            ({"sampler": "DDIM"}, "sampler", "run the flow-matching samplers Euler, DPM++ 2M"),
            ({"width": 72}, "width", "multiples of 16, not 72"),
            ({"outpaint_right": 8}, "outpaint_right", "multiples of 16, not 8"),
            ({"hires_fix": "on", "hires_scale": 1.5, "width": 80}, "hires_scale",
             "multiples of 16: upscaled by 1.5, 80x64 becomes 120x96"),
            ({"prompt": "a [fox:cat:0.5]"}, "prompt", "don't support prompt editing"),
        ]
        for values, field, message in refused:
            with self.subTest(field=field):
                form = self.form(self.flux, **values)
                self.assertFalse(form.is_valid())
                self.assertIn(message, " ".join(form.errors[field]))
        form = self.form(self.sd35, clip_skip=2, negative_prompt="[a|b]")
        self.assertIn("Stable Diffusion 3.x models don't support clip skip",
                      " ".join(form.errors["clip_skip"]))
        self.assertIn("don't support prompt editing", " ".join(form.errors["negative_prompt"]))
        # FLUX.1 reads no negative prompt: whatever it holds is no reason to refuse.
        self.assertTrue(self.form(self.flux, negative_prompt="[a|b]").is_valid())

    def test_img2img_inpaint_hires_and_dpm_with_a_flow_model_are_taken(self):
        upload = io.BytesIO()
        PILImage.new("RGB", (64, 64)).save(upload, "PNG")
        asked = {
            "img2img": {},
            "inpaint": {"mask_data": MASK_DATA_PREFIX + base64.b64encode(upload.getvalue())
                        .decode()},
            "hires fix": {"hires_fix": "on", "hires_scale": 1.5},
            "DPM++ 2M": {"sampler": "DPM++ 2M", "shift": 3.0},
        }
        for model in (self.flux, self.sd35):
            for mode, values in asked.items():
                with self.subTest(model=model.name, mode=mode):
                    files = {}
                    if mode in ("img2img", "inpaint"):
                        files["source_upload"] = SimpleUploadedFile(
                            "s.png", upload.getvalue(), "image/png"
                        )
                    form = GenerationForm(
                        {"prompt": "a red fox", "model": model.pk, "steps": 4,
                         "guidance_scale": 3.5, "width": 64, "height": 64, "strength": 0.5,
                         **values},
                        files, user=self.editor, project=self.project,
                    )
                    self.assertTrue(form.is_valid(), form.errors)


    def test_a_lora_of_the_models_family_is_taken(self):
        make_lora(self.team, self.owner, "flux-style", "flux1",
                  data=flux_peft_lora_bytes(tiny=True))
        make_lora(self.team, self.owner, "sd15-style")

        taken = self.form(self.flux, prompt="a red fox <lora:flux-style:0.8>")
        self.assertTrue(taken.is_valid(), taken.errors)
        self.assertEqual([choice.weight for choice in taken.cleaned_data["loras"]], [0.8])
        refused = self.form(self.flux, prompt="a red fox <lora:sd15-style:0.8>")
        self.assertFalse(refused.is_valid())


# --- a job end to end, in this process ---------------------------------------------------


@pytest.fixture(params=["flux", "sd3"])
def flow_job(request, tmp_path_factory, db):
    from gpu_workers.tiny_models import build_tiny_flux, build_tiny_sd3

    family = request.param
    build = build_tiny_flux if family == "flux" else build_tiny_sd3
    folder = build(tmp_path_factory.getbasetemp() / f"models-flow-jobs/tiny-{family}")
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(
        name=f"tiny-{family}", source=str(folder), source_kind=SourceKind.FOLDER,
        family=ModelFamily.FLUX1 if family == "flux" else ModelFamily.SD3,
    )
    job = GenerationJob.objects.create(
        project=project, created_by=user, model=model, prompt="a cat on the mat",
        negative_prompt="blurry", steps=4, guidance_scale=4.0, width=64, height=48, seed=99,
    )
    return family, folder, job


def test_a_flow_job_makes_the_pipelines_image(flow_job):
    family, folder, job = flow_job
    with published_events() as events:
        job_execute(job_id=job.pk)

    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 2, 3, 4]
    assert events[-1]["type"] == "job.finished", events[-1]
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    png = PILImage.open(io.BytesIO(Image.objects.get(job=job).file.read()))
    assert png.size == (64, 48)
    spec = json.loads(png.info["studio"])
    assert spec["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"
    pipeline = FluxPipeline if family == "flux" else StableDiffusion3Pipeline
    pipe = pipeline.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    options = {"negative_prompt": "blurry"} if family == "sd3" else {}
    expected = pipe(
        prompt="a cat on the mat", num_inference_steps=4, guidance_scale=4.0, width=64,
        height=48, generator=torch.Generator("cpu").manual_seed(99), **options,
    ).images[0]
    assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(expected))


def test_a_flow_hires_fix_job_is_the_pipelines_two_passes(flow_job):
    """Hires fix for FLUX.1 and SD 3.x: the first pass, upscaled (Lanczos) and redrawn by
    the family's img2img pipeline at the larger size with the same seed."""
    family, folder, job = flow_job
    job.width, job.height = 64, 48
    job.hires_scale, job.hires_steps, job.hires_strength = 2.0, 4, 0.5
    job.save()
    with published_events() as events:
        job_execute(job_id=job.pk)

    # 4 first-pass steps, then 4 × 0.5 = 2 of the hires pass.
    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 2, 3, 4, 5, 6]
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, job.error
    png = PILImage.open(io.BytesIO(Image.objects.get(job=job).file.read()))
    assert png.size == (128, 96)
    first = FluxPipeline if family == "flux" else StableDiffusion3Pipeline
    second = FluxImg2ImgPipeline if family == "flux" else StableDiffusion3Img2ImgPipeline
    options = {"negative_prompt": "blurry"} if family == "sd3" else {}
    pipe = first.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    first_image = pipe(
        prompt="a cat on the mat", num_inference_steps=4, guidance_scale=4.0, width=64,
        height=48, generator=torch.Generator("cpu").manual_seed(99), **options,
    ).images[0]
    pipe = second.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt="a cat on the mat", image=first_image.resize((128, 96), PILImage.LANCZOS),
        strength=0.5, num_inference_steps=4, guidance_scale=4.0, width=128, height=96,
        generator=torch.Generator("cpu").manual_seed(99), **options,
    ).images[0]
    assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(expected))
