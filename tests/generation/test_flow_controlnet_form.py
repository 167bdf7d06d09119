"""ControlNet for FLUX.1 and SD 3.x models in the generate form (issue #17): a ControlNet of
the model's family is taken for txt2img, a FLUX.1 one with a source image or hires fix too;
an SD 3.x one with those (img2img passes, which the worker doesn't run with an SD 3.x
ControlNet) is refused naming the family, and a ControlNet of another family is refused
naming both."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from generation.forms import GenerationForm
from generation.models import DiffusionModel, ModelFamily, ModelKind
from tests.base import StudioTestCase


def png_upload(name):
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (255, 255, 255)).save(buffer, "PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), "image/png")


class FlowControlNetFormTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.models, cls.controlnets = {}, {}
        for family, name in [(ModelFamily.FLUX1, "FLUX.1 dev"), (ModelFamily.SD3, "SD 3.5")]:
            cls.models[family] = DiffusionModel.objects.create(
                name=name, source=f"/models/{family}", family=family
            )
            cls.controlnets[family] = DiffusionModel.objects.create(
                name=f"canny-{family}", source=f"/models/canny-{family}", family=family,
                kind=ModelKind.CONTROLNET,
            )

    def form(self, family, controlnet, source=False, **values):
        data = {"prompt": "a red fox", "model": self.models[family].pk, "steps": 4,
                "guidance_scale": 3.5, "width": 64, "height": 64, "strength": 0.5,
                "control_model": controlnet.pk, **values}
        files = {"control_upload": png_upload("edges.png")}
        if source:
            files["source_upload"] = png_upload("source.png")
        return GenerationForm(data, files, user=self.editor, project=self.project)

    def test_a_controlnet_of_the_family_is_taken_for_txt2img(self):
        for family, controlnet in self.controlnets.items():
            with self.subTest(family=family):
                form = self.form(family, controlnet, control_scale=0.7)
                self.assertTrue(form.is_valid(), form.errors)
                self.assertEqual(form.cleaned_data["control_model"], controlnet)

    def test_with_a_source_image_or_hires_fix_flux_takes_it_sd3_refuses_it(self):
        for asked in ({"source": True}, {"hires_fix": "on", "hires_scale": 1.5}):
            with self.subTest(asked=asked):
                flux = self.form(ModelFamily.FLUX1, self.controlnets[ModelFamily.FLUX1], **asked)
                self.assertTrue(flux.is_valid(), flux.errors)
                sd3 = self.form(ModelFamily.SD3, self.controlnets[ModelFamily.SD3], **asked)
                self.assertFalse(sd3.is_valid())
                self.assertIn(
                    "Stable Diffusion 3.x models don't support ControlNet with a source image "
                    "or hires fix", " ".join(sd3.errors["control_model"]),
                )

    def test_a_controlnet_of_another_family_is_refused_naming_both(self):
        form = self.form(ModelFamily.FLUX1, self.controlnets[ModelFamily.SD3])
        self.assertFalse(form.is_valid())
        self.assertIn("“canny-sd3” is a Stable Diffusion 3.x ControlNet; “FLUX.1 dev” is FLUX.1",
                      " ".join(form.errors["control_model"]))
