"""FLUX.1 Depth and Canny [dev] models in the studio: the library reads whether a model is
one (its transformer's 128 input channels, from a folder's transformer/config.json or a
single file's header) when it is saved; the generate form offers it text to image only,
with a control image and without a ControlNet model or hires fix, refusing the rest on the
field that asks it, and the studio page says so under the model menu."""

import importlib
from pathlib import Path

from django.apps import apps
from django.urls import reverse

from generation.forms import GenerationForm
from generation.library.sources import flux_transformer
from generation.models import (
    DiffusionModel,
    FluxTransformer,
    JobMode,
    ModelFamily,
    ModelKind,
    SourceKind,
)
from tests.base import GenerateFormTestCase, make_image, make_job
from tests.generation.test_flux_fill_models import (
    FluxModelSavingTestCase,
    flux_file,
    flux_folder,
)
from tests.generation.test_inpaint_outpaint_jobs import mask_data_url

STANDARD, FILL, CONTROL = FluxTransformer.STANDARD, FluxTransformer.FILL, FluxTransformer.CONTROL


class ControlDetectionTestCase(FluxModelSavingTestCase):
    """What the library reads, and what it records when staff save a model."""

    saved_name = "FLUX.1 Canny"

    def test_control_is_read_from_a_folder_or_a_file_in_every_layout(self):
        control = flux_folder(self.tmp.name, "canny", channels=128)
        dev = flux_folder(self.tmp.name, "dev")
        folder, file, hub = SourceKind.FOLDER, SourceKind.FILE, SourceKind.HUB
        self.assertEqual(flux_transformer(str(control), source_kind=folder), CONTROL)
        self.assertEqual(flux_transformer(str(dev), source_kind=folder), STANDARD)
        for layout in ("bfl", "comfyui", "diffusers"):
            with self.subTest(layout=layout):
                depth = flux_file(self.tmp.name, f"depth-{layout}.safetensors", channels=128,
                                  layout=layout)
                fill = flux_file(self.tmp.name, f"fill-{layout}.safetensors", channels=384,
                                 layout=layout)
                self.assertEqual(flux_transformer(str(depth), source_kind=file), CONTROL)
                self.assertEqual(flux_transformer(str(fill), source_kind=file), FILL)
        not_a_model = Path(self.tmp.name) / "notes.safetensors"
        not_a_model.write_bytes(b"not a safetensors file")
        self.assertEqual(flux_transformer(str(not_a_model), source_kind=file), STANDARD)
        self.assertEqual(
            flux_transformer("black-forest-labs/FLUX.1-Canny-dev", source_kind=hub), STANDARD
        )

    def test_saving_a_model_records_whether_it_is_a_control_model(self):
        self.client.force_login(self.staff)
        control = flux_folder(self.tmp.name, "canny", channels=128)
        dev = flux_folder(self.tmp.name, "dev")
        model = self.save(reverse("model_create"), source_kind=SourceKind.FOLDER,
                          source=str(control))
        self.assertEqual((model.is_flux_control, model.is_flux_fill), (True, False))
        self.assertEqual(model.modes(), [JobMode.TXT2IMG])
        single = self.save(reverse("model_create"), name="FLUX.1 Depth file",
                           source_kind=SourceKind.FILE, config_source=str(dev),
                           source=str(flux_file(self.tmp.name, "d.safetensors", channels=128)))
        self.assertTrue(single.is_flux_control)
        # Its source changed to FLUX.1 [dev]'s, it runs every mode again.
        model = self.save(reverse("model_edit", args=[model.pk]), source_kind=SourceKind.FOLDER,
                          source=str(dev))
        self.assertFalse(model.is_flux_control)
        self.assertEqual(model.modes(), list(JobMode))

    def test_models_registered_before_are_read_by_the_migration(self):
        sources = {
            FILL: str(flux_folder(self.tmp.name, "fill", channels=384)),
            CONTROL: str(flux_folder(self.tmp.name, "canny", channels=128)),
            STANDARD: "/nowhere",
        }
        read = [
            DiffusionModel.objects.create(name=f"Read {variant}", family=ModelFamily.FLUX1,
                                          source_kind=SourceKind.FOLDER, source=source)
            for variant, source in sources.items()
        ]
        # Rows saved before sources were checked: a path as a Hub id, a file not there.
        odd = [
            DiffusionModel.objects.create(name=f"Odd {kind}", family=ModelFamily.FLUX1,
                                          source_kind=kind, source="/nowhere/f.safetensors")
            for kind in (SourceKind.HUB, SourceKind.FILE)
        ]
        migration = importlib.import_module(
            "generation.migrations.0025_diffusionmodel_flux_transformer"
        )
        migration.read_flux_transformers(apps, None)
        self.assertEqual(
            [DiffusionModel.objects.get(pk=model.pk).flux_transformer for model in read + odd],
            [FILL, CONTROL, STANDARD, STANDARD, STANDARD],
        )


class ControlModesTestCase(GenerateFormTestCase):
    """The generate form and the studio page with a FLUX.1 Depth or Canny model."""

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.canny = DiffusionModel.objects.create(
            name="FLUX.1 Canny dev", source="/models/flux-canny", family=ModelFamily.FLUX1,
            flux_transformer=FluxTransformer.CONTROL,
        )
        cls.dev = DiffusionModel.objects.create(
            name="FLUX.1 dev", source="/models/flux-dev", family=ModelFamily.FLUX1
        )
        cls.controlnet = DiffusionModel.objects.create(
            name="FLUX.1 ControlNet", source="/models/flux-controlnet",
            family=ModelFamily.FLUX1, kind=ModelKind.CONTROLNET,
        )

    def setUp(self):
        self.client.force_login(self.editor)
        self.source = make_image(make_job(self.project, self.owner, self.model))
        self.params = {"prompt": "a house by a lake", "steps": 4, "guidance_scale": 30,
                       "width": 64, "height": 64, "strength": 1}

    def form(self, model, **values):
        return GenerationForm({**self.params, "model": model.pk, **values},
                              user=self.editor, project=self.project)

    def test_other_modes_are_refused_naming_the_model_and_its_mode(self):
        for mode, values in (
            ("image to image", {"source_image": self.source.pk}),
            ("inpaint", {"source_image": self.source.pk, "mask_data": mask_data_url()}),
            ("outpaint", {"source_image": self.source.pk, "outpaint_right": 32}),
        ):
            with self.subTest(mode=mode):
                form = self.form(self.canny, control_image=self.source.pk, **values)
                self.assertFalse(form.is_valid())
                self.assertEqual(form.errors["model"], [
                    "“FLUX.1 Canny dev” is a FLUX.1 Depth or Canny model: it makes images from "
                    f"text and a control image only, not {mode}. Remove the source image, or "
                    "choose another model."
                ])

    def test_it_needs_a_control_image(self):
        form = self.form(self.canny)
        self.assertFalse(form.is_valid())
        self.assertEqual(form.errors["control_upload"], [
            "“FLUX.1 Canny dev” is a FLUX.1 Depth or Canny model: choose the control image it "
            "follows (a depth map or an edge map)."
        ])
        self.assertNotIn("model", form.errors)

    def test_it_takes_no_controlnet_model_nor_hires_fix(self):
        form = self.form(self.canny, control_model=self.controlnet.pk,
                         control_image=self.source.pk, hires_fix="on")
        self.assertFalse(form.is_valid())
        self.assertEqual(form.errors["control_model"], [
            "“FLUX.1 Canny dev” is a FLUX.1 Depth or Canny model: it reads the control image "
            "itself. Leave the ControlNet model at None."
        ])
        self.assertIn("hires fix's second pass is image to image", form.errors["hires_fix"][0])
        self.assertNotIn("control_upload", form.errors)

    def test_other_models_keep_every_mode_without_a_control_image(self):
        for model in (self.dev, self.model):
            with self.subTest(model=model.name):
                form = self.form(model)
                self.assertTrue(form.is_valid(), form.errors)

    def test_the_studio_page_says_a_control_model_makes_images_from_text(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, 'data-family="flux1" data-modes="text to image" '
                                      'data-control-image="">FLUX.1 Canny dev</option>')
        self.assertContains(response, 'data-family="flux1">FLUX.1 dev</option>')
        self.assertContains(response, "js/model_modes.js")

    def test_a_new_form_starts_on_a_model_that_makes_images_from_text_alone(self):
        DiffusionModel.objects.filter(pk=self.canny.pk).update(name="A Canny model")
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertEqual(response.context["form"].initial["model"], self.dev.pk)
