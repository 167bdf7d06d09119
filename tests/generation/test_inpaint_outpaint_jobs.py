"""Inpaint (a mask painted over the source) and outpaint (the source extended) from the
studio form: checked before any job, stored, and run on the tiny model."""

import base64
import io
from unittest import mock

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage

from generation.models import GenerationJob, JobMode, JobStatus
from generation.services import job_retry
from tests.base import GenerateFormTestCase, make_image, make_job


def mask_data_url(size=(64, 64), box=(16, 16, 48, 48)):
    mask = PILImage.new("L", size, 0)
    mask.paste(255, box)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class ImageModesFormTestCase(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.source = make_image(make_job(self.project, self.owner, self.model))
        self.params = {
            "prompt": "a window in the wall",
            "model": self.model.pk,
            "steps": 10,
            "guidance_scale": 7,
            "width": 64,
            "height": 64,
            "source_image": self.source.pk,
        }

    def test_a_painted_mask_makes_an_inpaint_job(self):
        self.assertEqual(self.post(mask_data=mask_data_url(), strength=0.9).status_code, 200)
        job = GenerationJob.objects.get(mode=JobMode.INPAINT)
        self.assertRegex(job.mask_upload.name, rf"^uploads/{self.project.pk}/[0-9a-f]{{32}}\.png$")
        mask = PILImage.open(default_storage.open(job.mask_upload.name))
        self.assertEqual((mask.size, mask.getpixel((32, 32)), mask.getpixel((2, 2))),
                         ((64, 64), 255, 0))

    def test_extending_a_source_makes_an_outpaint_job_on_the_larger_canvas(self):
        self.post(outpaint_left=32, outpaint_bottom=16)
        job = GenerationJob.objects.get(mode=JobMode.OUTPAINT)
        self.assertEqual((job.width, job.height), (96, 80))
        self.assertEqual(job.source_box(), (32, 0, 96, 64))
        # Duplicating it gives the form the source's size back, not the canvas's.
        self.assertEqual((job.parameters()["width"], job.parameters()["height"]), (64, 64))

    def test_a_mask_that_is_not_a_png_data_url(self):
        self.assert_refused("mask_data", "must be a PNG painted in the mask editor",
                            mask_data="javascript:alert(1)")

    def test_a_mask_that_is_not_base64(self):
        self.assert_refused("mask_data", "damaged", mask_data="data:image/png;base64,@@@")

    def test_a_mask_that_is_not_an_image(self):
        data = "data:image/png;base64," + base64.b64encode(b"<svg onload=alert(1)>").decode()
        self.assert_refused("mask_data", "Mask: The file is not an image", mask_data=data)

    def test_a_mask_without_a_source(self):
        self.assert_refused("mask_data", "Choose a source image", source_image="",
                            mask_data=mask_data_url())

    def test_outpaint_without_a_source(self):
        self.assert_refused("outpaint_left", "Choose a source image to extend",
                            source_image="", outpaint_left=64)

    def test_outpaint_and_a_mask_at_once(self):
        self.assert_refused("mask_data", "Outpaint makes its own mask", outpaint_top=64,
                            mask_data=mask_data_url())

    def test_outpaint_not_a_multiple_of_8(self):
        self.assert_refused("outpaint_right", "multiple of 8 (try 16)", outpaint_right=20)

    def test_outpaint_beyond_the_pixel_limit(self):
        self.assert_refused("outpaint_left", "more than the", width=1024, height=1024,
                            outpaint_left=1024, outpaint_right=1024)

    def test_retry_keeps_the_mask_and_the_source(self):
        self.post(mask_data=mask_data_url())
        job = GenerationJob.objects.get(mode=JobMode.INPAINT)
        GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
        job.refresh_from_db()
        with mock.patch("generation.services.enqueue_generation"):
            retry = job_retry(job=job, user=self.editor)
        self.assertEqual(
            (retry.mode, retry.mask_upload.name, retry.source_image),
            (JobMode.INPAINT, job.mask_upload.name, self.source),
        )

    def test_an_uploaded_source_can_be_inpainted_too(self):
        buffer = io.BytesIO()
        PILImage.new("RGB", (64, 64), (9, 9, 9)).save(buffer, format="PNG")
        upload = SimpleUploadedFile("s.png", buffer.getvalue(), content_type="image/png")
        self.post(source_image="", source_upload=upload, mask_data=mask_data_url())
        job = GenerationJob.objects.get(mode=JobMode.INPAINT)
        self.assertTrue(job.source_upload.name and job.mask_upload.name)
