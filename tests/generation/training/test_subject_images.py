"""A subject's images: created with a name, class word and token; 3 to 30 images in the
allowed formats and sizes, stored rebuilt from their pixels (no EXIF) under server-chosen
names, all or none; shown as a grid with their training squares; crops placed by hand are
checked; captions are optional."""

import html
import io

from django.test import override_settings
from django.urls import reverse
from PIL import Image as PILImage

from generation.training.subjects.models import Subject, SubjectImage
from tests.base import StudioTestCase
from tests.subject_builders import image_bytes, image_upload, make_subject


class SubjectCreateTests(StudioTestCase):
    def test_an_editor_creates_a_subject_with_a_lower_case_token(self):
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("subject_new", args=[self.team.pk]),
            {"name": "Rex", "class_word": "dog", "token": "ZXQ"},
        )
        subject = Subject.objects.get(team=self.team)
        self.assertRedirects(response, subject.get_absolute_url())
        self.assertEqual(
            (subject.token, subject.instance_prompt()), ("zxq", "a photo of zxq dog")
        )

    def test_bad_tokens_and_class_words_are_refused_naming_the_field(self):
        self.client.force_login(self.editor)
        make_subject(self.team, self.editor, token="zxq", images=0)
        url = reverse("subject_new", args=[self.team.pk])
        cases = [
            ({"token": "two words"}, "token", "one word of 3 to 20"),
            ({"token": "zxq"}, "token", "already stands for another"),
            ({"class_word": "d0g!"}, "class_word", "plain noun"),
            ({"name": ""}, "name", "required"),
        ]
        for change, field, message in cases:
            with self.subTest(field=field, change=change):
                data = {"name": "Other", "class_word": "cat", "token": "qwv", **change}
                response = self.client.post(url, data)
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, " ".join(response.context["form"].errors[field]))
        self.assertEqual(Subject.objects.filter(team=self.team).count(), 1)


class SubjectDeleteTests(StudioTestCase):
    def test_deleting_a_subject_removes_its_files_and_disables_a_persons_loras(self):
        from generation.models import JobStatus
        from generation.training.subjects.models import SubjectConsent
        from tests.lora_builders import make_lora
        from tests.subject_builders import make_run

        person = make_subject(self.team, self.editor, depicts_person=True)
        SubjectConsent.objects.create(subject=person, given_by="Jo", given_on="2026-01-02",
                                      scope="All", recorded_by=self.editor)
        lora = make_lora(self.team, self.editor, "Jo")
        make_run(person, self.project, self.editor, self.model, status=JobStatus.FINISHED,
                 lora=lora)
        storage = person.images.first().file.storage
        names = [image.file.name for image in person.images.all()]
        self.client.force_login(self.editor)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(reverse("subject_delete", args=[person.pk]))
        self.assertRedirects(response, reverse("team_subjects", args=[self.team.pk]))
        self.assertFalse(Subject.objects.exists())
        self.assertFalse(any(storage.exists(name) for name in names))
        lora.refresh_from_db()
        self.assertIn("a person, was deleted with its consent record", lora.disabled_reason)


class SubjectImageUploadTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor, images=0)

    def upload(self, *files):
        self.client.force_login(self.editor)
        return self.client.post(
            reverse("subject_images_upload", args=[self.subject.pk]), {"images": list(files)}
        )

    def assert_refused(self, message, *files):
        response = self.upload(*files)
        self.assertEqual(response.status_code, 422)
        self.assertIn(message, " ".join(response.context["images_form"].errors["images"]))
        self.assertContains(response, message, status_code=422)
        self.assertFalse(self.subject.images.exists())

    def test_images_are_stored_rebuilt_from_pixels_without_exif(self):
        exif = PILImage.Exif()
        exif[0x010F] = "SecretCam"  # Make
        exif[0x8825] = {2: (48, 51, 0)}  # GPS
        jpeg = image_upload("holiday.jpg", format="JPEG", exif=exif.tobytes())
        response = self.upload(jpeg, image_upload("b.png"), image_upload("c.webp", format="WEBP"))

        self.assertRedirects(response, self.subject.get_absolute_url())
        images = list(self.subject.images.all())
        self.assertEqual(len(images), 3)
        for image in images:
            stored = image.file.read()
            self.assertNotIn(b"SecretCam", stored)
            self.assertTrue(image.file.name.startswith(f"subjects/{self.team.pk}/"))
            self.assertNotIn("holiday", image.file.name)
            picture = PILImage.open(io.BytesIO(stored))
            self.assertEqual((picture.format, picture.size), ("PNG", (320, 256)))
            self.assertFalse(picture.getexif())

    def test_refusals_name_the_file_and_store_nothing(self):
        self.assert_refused("not an image", image_upload("a.png"),
                            image_upload("b.png"), _named("notes.png", b"hello"))
        self.assert_refused("GIF images are not accepted", _named("anim.png", image_bytes(
            format="GIF")))
        self.assert_refused("damaged or cut short", _named("cut.png", image_bytes()[:200]))
        self.assert_refused("tiny.png: 200x120 is too small",
                            image_upload("tiny.png", size=(200, 120)))
        self.assert_refused("Choose at least one image")

    @override_settings(STUDIO_MAX_UPLOAD_PIXELS=400 * 400)
    def test_images_over_the_pixel_limit_are_refused(self):
        self.assert_refused("at most 160,000 pixels", image_upload("big.png", size=(500, 400)))

    def test_a_subject_has_at_most_30_images(self):
        make_images = [image_upload(f"{n}.png") for n in range(28)]
        self.assertRedirects(self.upload(*make_images), self.subject.get_absolute_url())
        self.assert_refused_keeping(28, "so add at most 2 more",
                                    *[image_upload(f"x{n}.png") for n in range(3)])

    def assert_refused_keeping(self, count, message, *files):
        response = self.upload(*files)
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, message, status_code=422)
        self.assertEqual(self.subject.images.count(), count)

    def test_the_grid_shows_each_image_with_its_training_square(self):
        self.upload(image_upload("a.png", size=(400, 300)))
        image = self.subject.images.get()
        response = self.client.get(self.subject.get_absolute_url())
        self.assertContains(response, reverse("subject_image_file", args=[image.pk, "original"]))
        self.assertContains(response, "centre crop")
        # The centred 300px square of a 400x300 image: 12.5% from the left, 75% wide.
        self.assertContains(response, 'data-crop-box="12.50 0.00 75.00 100.00"')


class CropAndCaptionTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor, images=1, size=(600, 400))
        cls.image = cls.subject.images.get()

    def post(self, **data):
        self.client.force_login(self.editor)
        return self.client.post(
            reverse("subject_image_update", args=[self.image.pk]), data,
            headers={"HX-Request": "true"},
        )

    def test_the_automatic_crop_is_the_centred_square(self):
        self.assertEqual(self.image.crop_box(), (100, 0, 500, 400))

    def test_a_manual_crop_and_caption_are_saved_and_used(self):
        response = self.post(x="200", y="50", size="350", caption="  zxq dog  on a sofa ")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "crop 350px at 200, 50")
        self.image.refresh_from_db()
        self.assertEqual(self.image.crop_box(), (200, 50, 550, 400))
        self.assertEqual(self.image.training_caption(), "zxq dog on a sofa")

        self.post(reset="1", caption="")
        self.image.refresh_from_db()
        self.assertEqual(self.image.crop_box(), (100, 0, 500, 400))
        self.assertEqual(self.image.training_caption(), "a photo of zxq dog")

    def test_crops_outside_the_image_or_too_small_are_refused(self):
        cases = [
            ({"x": "300", "y": "0", "size": "350"}, "goes past the image's 600x400 edge"),
            ({"x": "0", "y": "0", "size": "100"}, "too small; use at least 256"),
            ({"x": "0", "y": "", "size": "300"}, "Give the crop's y"),
            ({"x": "-5", "y": "0", "size": "300"}, "greater than or equal to 0"),
        ]
        for data, message in cases:
            with self.subTest(data=data):
                response = self.post(**data, caption="ignored")
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, html.unescape(response.content.decode()))
                self.assertContains(response, 'value="ignored"', status_code=422)
        self.image.refresh_from_db()
        self.assertFalse(self.image.has_manual_crop())
        self.assertEqual(self.image.caption, "")

    def test_the_crop_preview_is_the_square_only(self):
        self.client.force_login(self.viewer)
        original = self.client.get(reverse("subject_image_file", args=[self.image.pk, "original"]))
        self.assertEqual(b"".join(original.streaming_content), self.image.file.open("rb").read())
        response = self.client.get(reverse("subject_image_file", args=[self.image.pk, "crop"]))
        picture = PILImage.open(io.BytesIO(response.content))
        self.assertEqual(picture.size, (256, 256))
        self.assertEqual(
            self.client.get(reverse("subject_image_file", args=[self.image.pk, "x"])).status_code,
            404,
        )

    def test_removing_an_image(self):
        self.client.force_login(self.editor)
        response = self.client.post(reverse("subject_image_delete", args=[self.image.pk]))
        self.assertRedirects(response, self.subject.get_absolute_url())
        self.assertFalse(SubjectImage.objects.filter(pk=self.image.pk).exists())


def _named(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)
