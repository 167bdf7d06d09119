"""Every uploaded image is checked, not only generated ones: the generate form's source,
control and image-prompt uploads against the blocklist of removed content, and subject
images (training data) against the blocklist and the scanner. A refusal names the upload,
stores nothing, and a hash match opens an escalated case about the uploader."""

from unittest import mock

from django.urls import reverse

from generation.models import DiffusionModel, GenerationJob, ModelKind
from generation.training.subjects.models import SubjectImage
from studio.moderation.models import Case, CaseKind, Moderator
from studio.moderation.removals import case_remove
from studio.moderation.scanning import image_scan
from tests.base import GenerateFormTestCase
from tests.moderation.test_image_hashes import altered, png_upload
from tests.moderation_helpers import make_textured_image, scanning_with, textured_picture
from tests.subject_builders import make_subject


class UploadScreenTestCase(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.moderator = Moderator.objects.create(user=cls.admin, team=None).user
        removed = make_textured_image(cls.project, cls.editor, cls.model, seed=1)
        with mock.patch("studio.moderation.scanning.publish"):
            settings_, scores = scanning_with(0.6)
            with settings_, scores:
                image_scan(image_id=removed.pk)
            case = Case.objects.get(subject_image_id=removed.pk, kind=CaseKind.SCAN_FLAG)
            case_remove(case=case, moderator=cls.moderator, reason_code="nsfw")
        cls.removed_copy = altered(textured_picture(1))

    def hash_cases(self):
        return Case.objects.filter(kind=CaseKind.HASH_MATCH, subject_image_id__isnull=True)


class GenerateFormUploadTests(UploadScreenTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.adapter = DiffusionModel.objects.create(
            name="ip-adapter-sd15", source="/models/ip-adapter", kind=ModelKind.IP_ADAPTER
        )
        cls.controlnet = DiffusionModel.objects.create(
            name="canny-sd15", source="/models/canny", kind=ModelKind.CONTROLNET
        )

    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {
            "prompt": "a house by a lake", "model": self.model.pk, "steps": 10,
            "guidance_scale": 7, "width": 64, "height": 64, "strength": 0.6,
        }

    def test_each_upload_field_is_checked_and_named(self):
        cases = [
            ("source_upload", "The source image", {}),
            ("control_upload", "The control image", {"control_model": self.controlnet.pk}),
            ("ip_adapter_upload", "The image prompt", {"ip_adapter_model": self.adapter.pk}),
        ]
        for field, name, extra in cases:
            with self.subTest(field=field):
                self.assert_refused(
                    field, f"{name} matches content the moderators removed",
                    **{field: png_upload(self.removed_copy), **extra},
                )
        self.assertEqual(self.hash_cases().count(), 3)
        self.assertTrue(all(case.escalated for case in self.hash_cases()))
        self.assertEqual(
            {(case.subject_user, case.team) for case in self.hash_cases()},
            {(self.editor, self.team)},
        )

    def test_other_uploads_make_jobs(self):
        response = self.post(
            ip_adapter_model=self.adapter.pk, ip_adapter_upload=png_upload(textured_picture(5))
        )
        self.assertEqual(response.status_code, 200)
        self.assertTrue(GenerationJob.objects.filter(ip_adapter_model=self.adapter).exists())
        self.assertFalse(self.hash_cases().exists())


class SubjectImageUploadTests(UploadScreenTestCase):
    def setUp(self):
        self.subject = make_subject(self.team, self.editor, images=0)
        self.client.force_login(self.editor)

    def upload(self, *pictures):
        uploads = [png_upload(picture, name=f"photo{n}.png") for n, picture in enumerate(pictures)]
        return self.client.post(
            reverse("subject_images_upload", args=[self.subject.pk]), {"images": uploads}
        )

    def assert_refused(self, response, message):
        self.assertEqual(response.status_code, 422)
        self.assertIn(message, " ".join(response.context["images_form"].errors["images"]))
        self.assertFalse(SubjectImage.objects.filter(subject=self.subject).exists())

    def test_removed_content_is_refused_and_escalated(self):
        # The removed picture drawn larger: subject images need 256 pixels a side.
        response = self.upload(textured_picture(7, size=320), textured_picture(1, size=320))
        self.assert_refused(
            response, "photo1.png: this subject image matches content the moderators removed"
        )
        case = self.hash_cases().get()
        self.assertEqual((case.subject_user, case.team, case.escalated),
                         (self.editor, self.team, True))

    def test_an_image_the_scan_would_flag_or_block_is_refused(self):
        for score, decision in ((0.6, "flagged for review"), (0.95, "blocked")):
            with self.subTest(score=score):
                settings_, scores = scanning_with(score)
                with settings_, scores:
                    response = self.upload(textured_picture(7, size=320))
                self.assert_refused(
                    response,
                    f"photo0.png: this subject image was {decision} by the moderation scan "
                    f"(unsafe {score:.2f})",
                )

    def test_images_that_pass_are_stored(self):
        settings_, scores = scanning_with(0.1)
        with settings_, scores:
            response = self.upload(textured_picture(7, size=320), textured_picture(8, size=320))
        self.assertRedirects(response, self.subject.get_absolute_url())
        self.assertEqual(SubjectImage.objects.filter(subject=self.subject).count(), 2)
        self.assertFalse(Case.objects.filter(kind=CaseKind.HASH_MATCH, subject_image_id=None)
                         .exists())
