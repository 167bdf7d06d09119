"""img2img from the studio form: an uploaded or gallery source, checked before any job."""

import io
from unittest import mock

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from PIL import Image as PILImage
from PIL import PngImagePlugin

from generation.models import GenerationJob, JobMode
from tests.base import GenerateFormTestCase, StudioTestCase, make_image, make_job


def png_upload(size=(80, 60), name="source.png", **save_options):
    buffer = io.BytesIO()
    # Noise: it does not compress, so the file's size follows its pixel count.
    PILImage.effect_noise(size, 60).convert("RGB").save(buffer, format="PNG", **save_options)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


class Img2ImgFormTestCase(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {
            "prompt": "the same scene at night",
            "model": self.model.pk,
            "steps": 10,
            "guidance_scale": 7,
            "width": 64,
            "height": 64,
            "strength": 0.5,
        }

    def test_an_upload_is_rebuilt_from_its_pixels_and_stored_under_our_name(self):
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "secret location")
        self.assertEqual(self.post(source_upload=png_upload(pnginfo=info)).status_code, 200)

        job = GenerationJob.objects.get()
        self.assertEqual((job.mode, job.strength, job.source_image), (JobMode.IMG2IMG, 0.5, None))
        name_pattern = rf"^uploads/{self.project.pk}/[0-9a-f]{{32}}\.png$"
        self.assertRegex(job.source_upload.name, name_pattern)
        stored = PILImage.open(default_storage.open(job.source_upload.name))
        self.assertEqual(stored.size, (80, 60))
        self.assertNotIn("Comment", stored.info)

    def test_a_gallery_image_the_user_may_see_is_a_source(self):
        image = make_image(make_job(self.project, self.owner, self.model))
        self.assertEqual(self.post(source_image=image.pk).status_code, 200)
        job = GenerationJob.objects.get(source_image=image)
        self.assertEqual(job.mode, JobMode.IMG2IMG)

    def test_without_a_source_it_stays_txt2img(self):
        self.post()
        self.assertEqual(GenerationJob.objects.get().mode, JobMode.TXT2IMG)

    def test_another_teams_image_is_refused_as_if_unknown(self):
        theirs = make_image(make_job(self.other_project, self.outsider, self.model))
        self.assert_refused("source_image", "Unknown source image", source_image=theirs.pk)

    def test_both_sources_at_once(self):
        image = make_image(make_job(self.project, self.owner, self.model))
        self.assert_refused("source_upload", "not both", source_image=image.pk,
                            source_upload=png_upload())

    def test_not_an_image(self):
        upload = SimpleUploadedFile("x.png", b"#!/bin/sh\nrm -rf /\n", content_type="image/png")
        self.assert_refused("source_upload", "not an image; use PNG, JPEG, WebP",
                            source_upload=upload)

    def test_a_truncated_png(self):
        data = png_upload(size=(256, 256)).read()
        upload = SimpleUploadedFile("cut.png", data[: len(data) // 2], content_type="image/png")
        self.assert_refused("source_upload", "damaged or cut short", source_upload=upload)

    def test_a_format_we_do_not_take(self):
        buffer = io.BytesIO()
        PILImage.new("RGB", (8, 8)).save(buffer, format="GIF")
        upload = SimpleUploadedFile("a.gif", buffer.getvalue(), content_type="image/gif")
        self.assert_refused("source_upload", "GIF images are not accepted", source_upload=upload)

    @override_settings(STUDIO_MAX_UPLOAD_BYTES=1000)
    def test_a_file_too_large(self):
        self.assert_refused("source_upload", "images up to 0 MB are accepted",
                            source_upload=png_upload(size=(300, 300)))

    @override_settings(STUDIO_MAX_UPLOAD_PIXELS=100 * 100)
    def test_too_many_pixels(self):
        self.assert_refused("source_upload", "The image is 200x100; at most 10,000 pixels",
                            source_upload=png_upload(size=(200, 100)))

    def test_a_decompression_bomb(self):
        with mock.patch.object(PILImage, "MAX_IMAGE_PIXELS", 1000):
            self.assert_refused("source_upload", "too large to open safely",
                                source_upload=png_upload(size=(100, 100)))

    def test_a_strength_that_runs_no_step(self):
        self.assert_refused("strength", "not one step runs", source_upload=png_upload(),
                            strength=0.05)

    def test_strength_out_of_range(self):
        self.assert_refused("strength", "Denoising strength must be from 0.01 to 1.",
                            source_upload=png_upload(), strength=1.5)


class UseAsSourceTestCase(StudioTestCase):
    def test_an_image_opens_the_studio_ready_for_img2img(self):
        image = make_image(make_job(self.project, self.owner, self.model, prompt="a red barn"))
        self.client.force_login(self.editor)
        response = self.client.get(
            reverse("project_studio", args=[self.project.pk]), {"source": image.pk}
        )
        form = response.context["form"]
        self.assertEqual((form.initial["source_image"], form.initial["prompt"]),
                         (image.pk, "a red barn"))
        self.assertContains(response, f"Starting from image #{image.pk}")
        detail = self.client.get(reverse("image_detail", args=[image.pk]))
        self.assertContains(detail, f"?source={image.pk}")

    def test_an_image_the_user_may_not_see_is_404(self):
        theirs = make_image(make_job(self.other_project, self.outsider, self.model))
        self.client.force_login(self.editor)
        for value in [theirs.pk, "x"]:
            response = self.client.get(
                reverse("project_studio", args=[self.project.pk]), {"source": value}
            )
            self.assertEqual(response.status_code, 404)

    def test_viewers_are_not_offered_it(self):
        image = make_image(make_job(self.project, self.owner, self.model))
        self.client.force_login(self.viewer)
        detail = self.client.get(reverse("image_detail", args=[image.pk]))
        self.assertNotContains(detail, "Use as source")
