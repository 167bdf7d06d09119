"""FLUX.1 Depth and Canny [dev] jobs: the studio's form and the API make one from a control
image without a ControlNet model (the recipe keeps the image, the job row too), which every
other model still refuses; generation/execution.py hands the worker the image as it is
(a ControlRef naming no ControlNet); a job runs end to end on the tiny control model and
makes FluxControlPipeline's image, its infotext naming the model and no ControlNet unit."""

import io
import json

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import generation_requests, job_execute
from generation.models import (
    DiffusionModel,
    FluxTransformer,
    GenerationJob,
    JobStatus,
    ModelFamily,
    SourceKind,
)
from generation.parameters_import import match_model, parse_a1111_infotext, parse_studio_spec
from generation.recipe import ControlNet, ImageRef, Recipe, RecipeInvalid
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.api.base import ApiTestCase
from tests.api.test_jobs import png_base64
from tests.base import GenerateFormTestCase, make_image, make_job
from tests.generation.test_controlnet_jobs import square_png


def flux_models():
    """A FLUX.1 Canny [dev] model and FLUX.1 [dev] beside it."""
    canny = DiffusionModel.objects.create(
        name="FLUX.1 Canny dev", source="/models/flux-canny", family=ModelFamily.FLUX1,
        flux_transformer=FluxTransformer.CONTROL,
    )
    dev = DiffusionModel.objects.create(
        name="FLUX.1 dev", source="/models/flux-dev", family=ModelFamily.FLUX1
    )
    return canny, dev


class ControlJobFormTestCase(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.canny, cls.dev = flux_models()

    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {"prompt": "a house by a lake", "model": self.canny.pk, "steps": 4,
                       "guidance_scale": 30, "width": 64, "height": 64}

    def test_an_uploaded_control_image_makes_a_job_without_a_controlnet(self):
        response = self.post(control_upload=square_png())
        self.assertEqual(response.status_code, 200)
        job = GenerationJob.objects.get()
        self.assertEqual((job.model, job.control_model, job.mode), (self.canny, None, "txt2img"))
        self.assertRegex(job.control_upload.name, rf"^uploads/{self.project.pk}/[0-9a-f]{{32}}")
        control = job.recipe().control
        self.assertIsNone(control.model)
        self.assertEqual(control.image, ImageRef(upload=job.control_upload.name))

    def test_a_gallery_image_is_a_control_image(self):
        image = make_image(make_job(self.project, self.owner, self.model))
        self.post(control_image=image.pk)
        job = GenerationJob.objects.get(model=self.canny)
        self.assertEqual((job.control_image, job.control_model), (image, None))
        self.assertEqual(job.recipe().control.image, ImageRef(image=image.pk))
        # Remixed, the form gets the control image back, still without a ControlNet.
        initial = job.recipe().form_initial()
        self.assertEqual((initial["control_image"], initial["control_model"]), (image.pk, None))

    def test_other_models_still_need_a_controlnet_model_for_the_image(self):
        for model in (self.dev, self.model):
            with self.subTest(model=model.name):
                self.assert_refused("control_model",
                                    "Choose a ControlNet model for the control image.",
                                    model=model.pk, control_upload=square_png())


class ControlRecipeTestCase(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.canny, _ = flux_models()

    def test_a_control_image_without_a_model_goes_through_every_adapter(self):
        recipe = Recipe(model=self.canny.pk, prompt="a house", width=64, height=64,
                        control=ControlNet(image=ImageRef(upload="uploads/1/edges.png")))
        self.assertEqual(Recipe.validated(recipe.model_dump(mode="json")), recipe)
        self.assertEqual(Recipe.from_flat(recipe.to_flat()), recipe)
        job = GenerationJob.objects.create(project=self.project, created_by=self.editor,
                                           **recipe.job_fields(seed=5))
        self.assertIsNone(job.control_model)
        self.assertEqual(job.recipe().control, recipe.control)

    def test_without_an_image_there_is_no_control(self):
        self.assertIsNone(Recipe.from_flat({"model": self.canny.pk, "prompt": "a house",
                                            "steps": 4, "guidance_scale": 3.5, "width": 64,
                                            "height": 64}).control)
        with self.assertRaises(RecipeInvalid):
            Recipe.validated({"model": self.canny.pk, "prompt": "a house",
                              "control": {"image": {}}})


class ControlJobApiTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.canny, cls.dev = flux_models()

    def setUp(self):
        self.secret = self.token(self.editor)
        self.path = f"/projects/{self.project.pk}/jobs"
        self.recipe = {"prompt": "a house by a lake", "model": self.canny.pk, "steps": 4,
                       "guidance_scale": 30, "width": 64, "height": 64, "seed": 3}

    def create(self, **overrides):
        return self.api("post", self.path, self.secret, json={**self.recipe, **overrides})

    def test_a_base64_control_image_makes_a_job_without_a_controlnet(self):
        response = self.create(control_upload=png_base64())
        self.assertEqual(response.status_code, 201, response.content)
        job = GenerationJob.objects.get()
        self.assertEqual((job.model, job.control_model), (self.canny, None))
        self.assertTrue(job.control_upload.name)
        self.assertEqual(job.recipe().control.image.upload, job.control_upload.name)

    def test_refusals_name_the_field(self):
        self.assert_problem(self.create(), 422, field="control_upload")
        self.assert_problem(self.create(model=self.dev.pk, control_upload=png_base64()), 422,
                            field="control_model")
        self.assertFalse(GenerationJob.objects.exists())


# --- a job end to end, in this process ---------------------------------------------------


def control_picture(size=(64, 48)):
    """A picture with some structure: a gradient and a bright square."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    pixels[8:24, 16:40] = 250
    return PILImage.fromarray(pixels.astype(np.uint8))


@pytest.fixture
def control_job(tiny_flux_control, db):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(
        name="tiny-flux-canny", source=str(tiny_flux_control), source_kind=SourceKind.FOLDER,
        family=ModelFamily.FLUX1, flux_transformer=FluxTransformer.CONTROL,
    )
    buffer = io.BytesIO()
    control_picture().save(buffer, format="PNG")
    upload = default_storage.save("uploads/test/depth.png", ContentFile(buffer.getvalue()))
    return GenerationJob.objects.create(
        project=project, created_by=user, model=model, prompt="a cat on the mat", steps=4,
        guidance_scale=10.0, width=64, height=48, seed=1234, control_upload=upload,
    )


def test_the_worker_gets_the_image_as_it_is_without_a_controlnet(control_job):
    [request] = generation_requests(control_job)
    control = request.control
    assert (control.model_source, control.module) == ("", "none")
    assert np.array_equal(np.asarray(control.image), np.asarray(control_picture()))


def test_a_deleted_control_image_fails_the_job_saying_so(control_job):
    from gpu_workers.requests import GenerationFailed

    gallery_image = make_image(control_job)
    GenerationJob.objects.filter(pk=control_job.pk).update(control_upload="",
                                                           control_image=gallery_image)
    gallery_image.delete()
    control_job.refresh_from_db()
    with pytest.raises(GenerationFailed, match="Its control image was deleted"):
        generation_requests(control_job)


def test_a_control_job_makes_the_control_pipelines_image(control_job, tiny_flux_control):
    from diffusers import FluxControlPipeline

    from tests.base import published_events

    with published_events() as events:
        job_execute(job_id=control_job.pk)

    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 2, 3, 4]
    control_job.refresh_from_db()
    assert control_job.status == JobStatus.FINISHED, control_job.error
    image = Image.objects.get(job=control_job)
    png = PILImage.open(io.BytesIO(image.file.read()))
    pipe = FluxControlPipeline.from_pretrained(tiny_flux_control, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt="a cat on the mat", control_image=control_picture(), num_inference_steps=4,
        guidance_scale=10.0, width=64, height=48,
        generator=torch.Generator("cpu").manual_seed(1234),
    ).images[0]
    assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(expected))

    # The infotext names the model, as Forge would, and claims no ControlNet unit; read back,
    # it gives the model and the settings (the control image, as any, isn't in the PNG).
    assert "ControlNet" not in image.parameters
    imported = parse_a1111_infotext(image.parameters)
    assert match_model(imported.model_name, DiffusionModel.objects.all()) == control_job.model
    assert {key: imported.values[key] for key in
            ("steps", "guidance_scale", "seed", "width", "height")} == {
        "steps": 4, "guidance_scale": 10.0, "seed": 1234, "width": 64, "height": 48}
    assert not any(key.startswith("control_") for key in imported.values)
    assert not any("ControlNet" in note for note in imported.not_applied)
    spec = json.loads(png.info["studio"])
    assert spec["controlnet"] == {"module": "none", "model": None, "image_id": None}
    from_spec = parse_studio_spec(spec)
    assert "Control image: not in the image: choose it again" in from_spec.not_applied
    assert not any(key.startswith("control_") for key in from_spec.values)
