"""FLUX.1 Fill models in the studio: the library reads whether a model is one (its
transformer's 384 input channels, from a folder's transformer/config.json or a single file's
header) when it is saved; the generate form, the studio page and the HTTP API then offer it
inpaint and outpaint only, and refuse the other modes naming the model and what it does."""

import json
import tempfile
from pathlib import Path

import numpy as np
from django.urls import reverse
from safetensors.numpy import save_file

from generation.forms import GenerationForm
from generation.library.sources import flux_transformer
from generation.models import (
    DiffusionModel,
    FluxTransformer,
    GenerationJob,
    JobMode,
    ModelFamily,
    SourceKind,
)
from studio.accounts.models import Role, User
from tests.api.base import ApiTestCase
from tests.base import GenerateFormTestCase, make_image, make_job
from tests.generation.test_inpaint_outpaint_jobs import mask_data_url

# A FLUX.1 transformer's input channels, and the pipeline its diffusers folder names.
FLUX_PIPELINES = {64: "FluxPipeline", 384: "FluxFillPipeline", 128: "FluxControlPipeline"}


def flux_folder(parent, name, *, channels=64):
    """A diffusers folder as FLUX.1 [dev]'s (64 input channels), FLUX.1-Fill-dev's (384) or
    FLUX.1-Depth-dev's (128): its model index and its transformer's config."""
    folder = Path(parent) / name
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": FLUX_PIPELINES[channels]}))
    config = {"_class_name": "FluxTransformer2DModel", "in_channels": channels,
              "out_channels": None if channels == 64 else 64}
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    return folder


def flux_file(parent, name, *, channels, layout="bfl"):
    """A FLUX.1 transformer file's marker and input projection, [inner width, channels], in
    Black Forest Labs' layout, ComfyUI's (prefixed) or diffusers'."""
    zeros = np.zeros((1,), dtype=np.float16)
    projection = np.zeros((4, channels), dtype=np.float16)
    tensors = {
        "bfl": {"double_blocks.0.img_attn.norm.key_norm.scale": zeros,
                "img_in.weight": projection},
        "comfyui": {"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": zeros,
                    "model.diffusion_model.img_in.weight": projection},
        "diffusers": {"single_transformer_blocks.0.proj_mlp.weight": zeros,
                      "x_embedder.weight": projection},
    }[layout]
    path = Path(parent) / name
    save_file(tensors, str(path))
    return path


class FluxModelSavingTestCase(GenerateFormTestCase):
    """Staff saving FLUX.1 models into the library from files in a temporary folder."""

    saved_name = "FLUX.1 model"

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.staff = User.objects.create_user("sam", "sam@example.org", cls.password, is_staff=True)

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def save(self, url, **fields):
        data = {"name": self.saved_name, "kind": "checkpoint", "family": ModelFamily.FLUX1,
                "config_source": "", "description": "", "default_width": 1024,
                "default_height": 1024, "default_steps": 28, "default_guidance_scale": 30,
                "default_sampler": "", "min_role": Role.EDITOR, "is_enabled": "on", **fields}
        response = self.client.post(url, data)
        self.assertRedirects(response, reverse("model_library"))
        return DiffusionModel.objects.get(name=data["name"])


class FillDetectionTestCase(FluxModelSavingTestCase):
    """What the library reads, and what it records when staff save a model."""

    saved_name = "FLUX.1 Fill"

    def test_fill_is_read_from_a_folder_or_a_file_in_every_layout(self):
        fill, dev = (flux_folder(self.tmp.name, name, channels=384 if name == "fill" else 64)
                     for name in ("fill", "dev"))
        folder, file = SourceKind.FOLDER, SourceKind.FILE
        self.assertEqual(flux_transformer(str(fill), source_kind=folder), FluxTransformer.FILL)
        self.assertEqual(flux_transformer(str(dev), source_kind=folder), FluxTransformer.STANDARD)
        for layout in ("bfl", "comfyui", "diffusers"):
            with self.subTest(layout=layout):
                fill_file = flux_file(self.tmp.name, f"fill-{layout}.safetensors",
                                      channels=384, layout=layout)
                dev_file = flux_file(self.tmp.name, f"dev-{layout}.safetensors",
                                     channels=64, layout=layout)
                self.assertEqual(flux_transformer(str(fill_file), source_kind=file),
                                 FluxTransformer.FILL)
                self.assertEqual(flux_transformer(str(dev_file), source_kind=file),
                                 FluxTransformer.STANDARD)
        # A Hub id not in this machine's cache is not known here.
        self.assertEqual(
            flux_transformer("black-forest-labs/FLUX.1-Fill-dev", source_kind=SourceKind.HUB),
            FluxTransformer.STANDARD,
        )

    def test_saving_a_model_records_whether_it_is_a_fill_model(self):
        self.client.force_login(self.staff)
        fill, dev = (flux_folder(self.tmp.name, name, channels=384 if name == "fill" else 64)
                     for name in ("fill", "dev"))
        model = self.save(reverse("model_create"), source_kind=SourceKind.FOLDER,
                          source=str(fill))
        self.assertTrue(model.is_flux_fill)
        self.assertEqual(model.modes(), [JobMode.INPAINT, JobMode.OUTPAINT])
        single = self.save(reverse("model_create"), name="FLUX.1 Fill file",
                           source_kind=SourceKind.FILE, config_source=str(dev),
                           source=str(flux_file(self.tmp.name, "f.safetensors", channels=384)))
        self.assertTrue(single.is_flux_fill)
        # Its source changed to FLUX.1 [dev]'s, it runs every mode again.
        model = self.save(reverse("model_edit", args=[model.pk]), source_kind=SourceKind.FOLDER,
                          source=str(dev))
        self.assertFalse(model.is_flux_fill)
        self.assertEqual(model.modes(), list(JobMode))


class FillModesTestCase(GenerateFormTestCase):
    """The generate form and the studio page with a FLUX.1 Fill model."""

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.fill = DiffusionModel.objects.create(
            name="FLUX.1 Fill dev", source="/models/flux-fill", family=ModelFamily.FLUX1,
            flux_transformer=FluxTransformer.FILL,
        )
        cls.dev = DiffusionModel.objects.create(
            name="FLUX.1 dev", source="/models/flux-dev", family=ModelFamily.FLUX1
        )

    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.source = make_image(make_job(self.project, self.owner, self.model))
        self.params = {"prompt": "a window in the wall", "model": self.fill.pk, "steps": 4,
                       "guidance_scale": 30, "width": 64, "height": 64, "strength": 1}

    def form(self, model, **values):
        return GenerationForm({**self.params, "model": model.pk, **values},
                              user=self.editor, project=self.project)

    def test_txt2img_and_img2img_are_refused_naming_the_model_and_its_modes(self):
        for mode, values in (("text to image", {}),
                             ("image to image", {"source_image": self.source.pk})):
            with self.subTest(mode=mode):
                form = self.form(self.fill, **values)
                self.assertFalse(form.is_valid())
                self.assertEqual(form.errors["model"], [
                    "“FLUX.1 Fill dev” is a FLUX.1 Fill model: it can only inpaint and "
                    f"outpaint, not {mode}. Choose a source image and paint a mask (inpaint) "
                    "or extend its sides (outpaint), or choose another model."
                ])

    def test_inpaint_and_outpaint_are_taken_and_other_models_keep_every_mode(self):
        for values in ({"source_image": self.source.pk, "mask_data": mask_data_url()},
                       {"source_image": self.source.pk, "outpaint_right": 32}):
            form = self.form(self.fill, **values)
            self.assertTrue(form.is_valid(), form.errors)
        for model in (self.dev, self.model):
            self.assertTrue(self.form(model).is_valid(), self.form(model).errors)

    def test_the_studio_refuses_a_txt2img_job_and_makes_an_inpaint_one(self):
        self.assert_refused("model", "it can only inpaint and outpaint, not text to image")
        response = self.post(source_image=self.source.pk, mask_data=mask_data_url())
        self.assertEqual(response.status_code, 200)
        self.assertEqual(GenerationJob.objects.get(model=self.fill).mode, JobMode.INPAINT)

    def test_the_studio_page_says_which_modes_a_fill_model_runs(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, 'data-family="flux1" data-modes="inpaint and outpaint">'
                                      "FLUX.1 Fill dev</option>")
        self.assertContains(response, 'data-family="flux1">FLUX.1 dev</option>')
        self.assertContains(response, "data-model-modes")
        self.assertContains(response, "js/model_modes.js")

    def test_a_new_form_starts_on_a_model_that_makes_images_from_text(self):
        """The first model by name, passing over a Fill model, which would refuse the
        form's first generation."""
        DiffusionModel.objects.filter(pk=self.fill.pk).update(name="A Fill model")
        studio = reverse("project_studio", args=[self.project.pk])
        for query in ("", f"?source={self.source.pk}"):
            with self.subTest(query=query):
                response = self.client.get(studio + query)
                self.assertEqual(response.context["form"].initial["model"], self.dev.pk)

    def test_other_users_cant_generate_with_it_in_the_project(self):
        """The Fill checks come after the project's: an outsider or a viewer learns nothing
        of the model and makes no job."""
        for user in (self.outsider, self.viewer):
            with self.subTest(user=user.username):
                self.client.force_login(user)
                response = self.post(source_image=self.source.pk, mask_data=mask_data_url())
                self.assertIn(response.status_code, (403, 404))
                self.assertNotContains(response, "FLUX.1 Fill", status_code=response.status_code)
        self.assertFalse(GenerationJob.objects.filter(model=self.fill).exists())


class FillApiTestCase(ApiTestCase):
    def test_the_api_refuses_txt2img_on_the_model_field(self):
        fill = DiffusionModel.objects.create(
            name="FLUX.1 Fill dev", source="/models/flux-fill", family=ModelFamily.FLUX1,
            flux_transformer=FluxTransformer.FILL,
        )
        secret = self.token(self.editor)
        response = self.api("post", f"/projects/{self.project.pk}/jobs", secret,
                            json={"prompt": "a fox", "model": fill.pk, "steps": 4,
                                  "width": 64, "height": 64})
        body = self.assert_problem(response, 422, "model")
        self.assertIn("it can only inpaint and outpaint, not text to image", body["detail"])
        self.assertFalse(GenerationJob.objects.exists())
        source = make_image(make_job(self.project, self.owner, self.model))
        response = self.api("post", f"/projects/{self.project.pk}/jobs", secret,
                            json={"prompt": "a fox", "model": fill.pk, "steps": 4,
                                  "width": 64, "height": 64, "source_image": source.pk,
                                  "outpaint_right": 32})
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(GenerationJob.objects.get(model=fill).mode, JobMode.OUTPAINT)
