"""The flow-matching shift (issue #17): a FLUX.1 or SD 3.x job may set it (ComfyUI's
ModelSamplingSD3 bounds, above 0 up to 100), the job keeps it and the worker's request
carries it; empty is the model's default; other families have none, and the form says so."""

from generation.execution import generation_requests
from generation.forms import GenerationForm
from generation.models import DiffusionModel, GenerationJob, ModelFamily
from generation.recipe import Recipe
from tests.api.base import ApiTestCase
from tests.base import StudioTestCase


class ShiftFormTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.flux = DiffusionModel.objects.create(
            name="FLUX.1 dev", source="/models/flux-dev", family=ModelFamily.FLUX1
        )
        cls.sd35 = DiffusionModel.objects.create(
            name="SD 3.5 Medium", source="/models/sd35", family=ModelFamily.SD3
        )

    def form(self, model, **values):
        data = {"prompt": "a red fox", "model": model.pk, "steps": 4, "guidance_scale": 3.5,
                "width": 64, "height": 64, **values}
        return GenerationForm(data, user=self.editor, project=self.project)

    def test_a_flow_model_takes_a_shift_and_the_worker_gets_it(self):
        for model, shift in ((self.flux, 1.5), (self.sd35, 6.0)):
            with self.subTest(model=model.name):
                form = self.form(model, shift=shift)
                self.assertTrue(form.is_valid(), form.errors)
                job = GenerationJob.objects.create(
                    project=self.project, created_by=self.editor,
                    **self.recipe_of(form).job_fields(seed=1),
                )
                self.assertEqual(job.shift, shift)
                self.assertEqual(job.recipe().shift, shift)
                self.assertEqual({request.shift for request in generation_requests(job)},
                                 {shift})

    def recipe_of(self, form):
        return Recipe.from_flat(form.cleaned_data)

    def test_left_empty_it_is_the_models_default(self):
        form = self.form(self.flux, shift="")
        self.assertTrue(form.is_valid(), form.errors)
        self.assertIsNone(form.cleaned_data["shift"])
        job = GenerationJob.objects.create(project=self.project, created_by=self.editor,
                                           **self.recipe_of(form).job_fields(seed=1))
        self.assertIsNone(generation_requests(job)[0].shift)

    def test_out_of_bounds_or_on_another_family_it_is_refused_naming_the_field(self):
        for shift in (0, 101):
            with self.subTest(shift=shift):
                form = self.form(self.flux, shift=shift)
                self.assertFalse(form.is_valid())
                self.assertIn("Shift must be from 0.01 to 100.", form.errors["shift"])
        form = self.form(self.model, shift=3)  # Stable Diffusion 1.x
        self.assertFalse(form.is_valid())
        self.assertIn("Stable Diffusion 1.x models have no shift: it applies to FLUX.1 and "
                      "SD 3.x models", " ".join(form.errors["shift"]))


class ShiftApiTestCase(ApiTestCase):
    def test_the_api_takes_and_shows_the_shift(self):
        flux = DiffusionModel.objects.create(name="FLUX.1 dev", source="/models/flux-dev",
                                             family=ModelFamily.FLUX1)
        secret = self.token(self.editor)
        path = f"/projects/{self.project.pk}/jobs"
        recipe = {"prompt": "a red fox", "model": flux.pk, "steps": 4, "width": 64,
                  "height": 64}
        response = self.api("post", path, secret, json={**recipe, "shift": 2.5})
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["jobs"][0]["shift"], 2.5)
        self.assertEqual(GenerationJob.objects.get().shift, 2.5)
        refused = self.api("post", path, secret,
                           json={**recipe, "model": self.model.pk, "shift": 2.5})
        self.assert_problem(refused, 422, "shift")
