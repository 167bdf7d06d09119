"""Perceptual hashes: every scanned image has its PDQ hash; removing an image blocklists
it; a new image or an uploaded source within STUDIO_HASH_MATCH_DISTANCE bits is blocked
and escalated as a hash-match case. Featureless images are never matched."""

import io
from unittest import mock

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from PIL import Image as PILImage

from gallery.models import ModerationStatus
from generation.models import GenerationJob
from studio.moderation.hashing import distance, pdq_hash
from studio.moderation.models import BlockedHash, Case, CaseKind, Moderator, ScanDecision
from studio.moderation.removals import case_remove
from studio.moderation.scanning import image_scan
from tests.base import StudioTestCase
from tests.moderation_helpers import make_textured_image, scanning_with, textured_picture


def png_upload(picture, name="source.png"):
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def altered(picture):
    """The same picture resized and re-encoded as JPEG: what a re-upload looks like."""
    buffer = io.BytesIO()
    picture.resize((150, 150)).save(buffer, format="JPEG", quality=75)
    buffer.seek(0)
    return PILImage.open(buffer).convert("RGB")


class HashTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.moderator = Moderator.objects.create(user=cls.admin, team=None).user

    def scan(self, image, score=0.0):
        with mock.patch("studio.moderation.scanning.publish"):
            settings_, scores = scanning_with(score)
            with settings_, scores:
                return image_scan(image_id=image.pk)

    def remove(self, image):
        """Scan an image, flag it, and have a moderator remove it."""
        self.scan(image, score=0.6)
        case = Case.objects.get(subject_image_id=image.pk, kind=CaseKind.SCAN_FLAG)
        with mock.patch("studio.moderation.scanning.publish"):
            return case_remove(case=case, moderator=self.moderator, reason_code="nsfw")


class HashingTests(HashTestCase):
    def test_edits_stay_close_and_other_images_are_far(self):
        original = textured_picture(1)
        same, _ = pdq_hash(original)
        self.assertLessEqual(distance(same, pdq_hash(altered(original))[0]), 31)
        self.assertGreater(distance(same, pdq_hash(textured_picture(2))[0]), 31)

    def test_every_scan_stores_the_hash_and_its_quality(self):
        scan = self.scan(make_textured_image(self.project, self.editor, self.model))
        self.assertEqual(scan.pdq_hash, pdq_hash(textured_picture(1))[0])
        self.assertGreaterEqual(scan.pdq_quality, 50)


class BlocklistTests(HashTestCase):
    def test_removing_an_image_blocklists_its_hash(self):
        image = make_textured_image(self.project, self.editor, self.model)
        self.remove(image)
        blocked = BlockedHash.objects.get()
        self.assertEqual(blocked.pdq_hash, image.scan.pdq_hash)
        self.assertEqual((blocked.source_image_id, blocked.added_by), (image.pk, self.moderator))

    def test_a_regenerated_copy_is_blocked_and_escalated(self):
        self.remove(make_textured_image(self.project, self.editor, self.model, seed=1))
        copy = make_textured_image(
            self.other_project, self.outsider, self.model, picture=altered(textured_picture(1))
        )
        scan = self.scan(copy, score=0.0)  # the classifier would pass it
        copy.refresh_from_db()
        self.assertEqual(scan.decision, ScanDecision.BLOCK)
        self.assertEqual(copy.moderation_status, ModerationStatus.FAILED)
        self.assertEqual(scan.matched_hash, BlockedHash.objects.get())
        self.assertLessEqual(scan.match_distance, 31)
        case = Case.objects.get(kind=CaseKind.HASH_MATCH)
        self.assertEqual(
            (case.subject_image_id, case.subject_user, case.team, case.escalated),
            (copy.pk, self.outsider, self.other_team, True),
        )

    def test_a_different_image_passes(self):
        self.remove(make_textured_image(self.project, self.editor, self.model, seed=1))
        other = make_textured_image(self.project, self.editor, self.model, seed=2)
        self.assertEqual(self.scan(other).decision, ScanDecision.PASS)

    @override_settings(STUDIO_HASH_MATCH_DISTANCE=0)
    def test_the_distance_is_a_setting(self):
        self.remove(make_textured_image(self.project, self.editor, self.model, seed=1))
        copy = make_textured_image(
            self.project, self.editor, self.model, picture=altered(textured_picture(1))
        )
        self.assertEqual(self.scan(copy).decision, ScanDecision.PASS)

    def test_featureless_images_are_never_blocklisted(self):
        flat = make_textured_image(
            self.project, self.editor, self.model, picture=PILImage.new("RGB", (64, 64), "red")
        )
        self.remove(flat)
        self.assertFalse(BlockedHash.objects.exists())
        self.assertLess(flat.scan.pdq_quality, 50)


class ReuploadTests(HashTestCase):
    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse at dusk", "model": self.model.pk, "steps": 20,
            "guidance_scale": 7.5, "width": 512, "height": 512, "strength": 0.6,
        }

    def post(self, upload):
        with mock.patch("generation.services.enqueue_generation"):
            with self.captureOnCommitCallbacks(execute=True):
                return self.client.post(
                    self.url, {**self.params, "source_upload": upload},
                    headers={"HX-Request": "true"},
                )

    def test_a_removed_images_reupload_is_refused_and_escalated(self):
        self.remove(make_textured_image(self.project, self.editor, self.model, seed=1))
        response = self.post(png_upload(altered(textured_picture(1))))
        self.assertEqual(response.status_code, 422)
        self.assertIn(
            "matches content the moderators removed",
            " ".join(response.context["form"].errors["source_upload"]),
        )
        self.assertFalse(GenerationJob.objects.filter(mode="img2img").exists())
        case = Case.objects.get(kind=CaseKind.HASH_MATCH)
        self.assertEqual((case.subject_user, case.team, case.escalated),
                         (self.editor, self.team, True))

    def test_other_uploads_go_through(self):
        self.remove(make_textured_image(self.project, self.editor, self.model, seed=1))
        response = self.post(png_upload(textured_picture(5)))
        self.assertEqual(response.status_code, 200)
        self.assertTrue(GenerationJob.objects.filter(mode="img2img").exists())
        self.assertFalse(Case.objects.filter(kind=CaseKind.HASH_MATCH).exists())
