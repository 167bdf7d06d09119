"""The studio form and IP-Adapters for flow families (issue #17): a FLUX.1 IP-Adapter is
taken for a FLUX.1 model, an SD 3.x one for an SD 3.x model; an adapter of another family
is refused naming both."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from generation.forms import GenerationForm
from generation.models import DiffusionModel, ModelFamily, ModelKind
from tests.base import StudioTestCase


def png_upload():
    upload = io.BytesIO()
    PILImage.new("RGB", (32, 32), (200, 40, 40)).save(upload, "PNG")
    return SimpleUploadedFile("prompt.png", upload.getvalue(), "image/png")


class FlowIPAdapterFormTestCase(StudioTestCase):
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
        cls.flux_adapter = DiffusionModel.objects.create(
            name="flux-ip-adapter", source="/models/flux-ip-adapter",
            kind=ModelKind.IP_ADAPTER, family=ModelFamily.FLUX1,
        )
        cls.sd3_adapter = DiffusionModel.objects.create(
            name="sd35-ip-adapter", source="/models/sd35-ip-adapter",
            kind=ModelKind.IP_ADAPTER, family=ModelFamily.SD3,
        )
        cls.sd15_adapter = DiffusionModel.objects.create(
            name="ip-adapter-sd15", source="/models/ip-adapter", kind=ModelKind.IP_ADAPTER
        )

    def form(self, model, adapter):
        data = {"prompt": "a red fox", "model": model.pk, "steps": 4, "guidance_scale": 3.5,
                "width": 64, "height": 64, "ip_adapter_model": adapter.pk,
                "ip_adapter_scale": 0.7}
        return GenerationForm(
            data, {"ip_adapter_upload": png_upload()}, user=self.editor, project=self.project
        )

    def test_a_flux_ip_adapter_is_taken_for_a_flux_model(self):
        form = self.form(self.flux, self.flux_adapter)

        self.assertTrue(form.is_valid(), form.errors)
        self.assertEqual(form.cleaned_data["ip_adapter_model"], self.flux_adapter)

    def test_an_adapter_of_another_family_is_refused_naming_both(self):
        form = self.form(self.flux, self.sd15_adapter)

        self.assertFalse(form.is_valid())
        self.assertIn("is a Stable Diffusion 1.x IP-Adapter; “FLUX.1 dev” is FLUX.1",
                      " ".join(form.errors["ip_adapter_model"]))

    def test_an_sd3_ip_adapter_is_taken_for_an_sd3_model(self):
        form = self.form(self.sd35, self.sd3_adapter)

        self.assertTrue(form.is_valid(), form.errors)
        self.assertEqual(form.cleaned_data["ip_adapter_model"], self.sd3_adapter)

    def test_an_sd3_ip_adapter_is_refused_for_flux_naming_both(self):
        form = self.form(self.flux, self.sd3_adapter)

        self.assertFalse(form.is_valid())
        self.assertIn("is a Stable Diffusion 3.x IP-Adapter; “FLUX.1 dev” is FLUX.1",
                      " ".join(form.errors["ip_adapter_model"]))
