"""A flagged (or removed) image is hidden from everyone but its project, whatever its
visibility says, on every page, fragment, file, thumbnail, download and secret-link URL,
until a moderator decides; then an approved one is seen as its visibility says. The same
authorisation matrix as tests/gallery/test_image_visibility.py."""

from unittest import mock

from django.urls import reverse

from gallery.models import Image, ModerationStatus, Visibility
from gallery.sharing import VisibilityRefused, image_set_visibility
from gallery.thumbnails import image_thumbnails_make
from studio.moderation.models import Case, CaseKind, ImageScan, Moderator
from studio.moderation.removals import case_approve
from studio.moderation.scanning import image_scan
from tests.base import StudioTestCase
from tests.moderation_helpers import make_textured_image, scanning_with

MEMBERS = ("owner", "admin", "editor", "viewer")
HTMX = {"HTTP_HX_REQUEST": "true"}


class FlaggedImageTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_textured_image(cls.project, cls.editor, cls.model)
        image_thumbnails_make(image_id=cls.image.pk)
        with mock.patch("studio.moderation.scanning.publish"):
            settings_, scores = scanning_with(0.7)
            with settings_, scores:
                image_scan(image_id=cls.image.pk)
        Image.objects.filter(pk=cls.image.pk).update(share_token="f" * 32)
        cls.image.refresh_from_db()

    def set_visibility(self, visibility):
        Image.objects.filter(pk=self.image.pk).update(visibility=visibility)

    def login(self, who):
        self.client.logout()
        if who != "anonymous":
            self.client.force_login(self.users_by_role()[who])

    def urls(self):
        pk, token = self.image.pk, self.image.share_token
        return {
            "detail": reverse("image_detail", args=[pk]),
            "card": reverse("image_card", args=[pk]),
            "file": reverse("image_file", args=[pk]),
            "download": self.image.download_url(),
            "clean download": reverse("image_download_clean", args=[pk]),
            "thumbnail 256": reverse("image_thumbnail", args=[pk, 256]),
            "thumbnail 512": reverse("image_thumbnail", args=[pk, 512]),
            "shared page": reverse("image_shared", args=[token]),
            "shared file": reverse("image_shared_file", args=[token]),
            "shared download": reverse("image_shared_file", args=[token]) + "?download=1",
            "shared clean download": reverse("image_shared_clean", args=[token]),
            "shared thumbnail": reverse("image_shared_thumbnail", args=[token, 256]),
        }


class FlaggedVisibilityTests(FlaggedImageTestCase):
    def test_the_scan_flagged_it(self):
        self.assertEqual(self.image.moderation_status, ModerationStatus.FAILED)
        self.assertEqual(ImageScan.objects.get().decision, "flag")

    def test_only_its_project_sees_it_on_every_url_whatever_its_visibility(self):
        for visibility in Visibility.values:
            self.set_visibility(visibility)
            for who in (*MEMBERS, "outsider", "anonymous"):
                self.login(who)
                for name, url in self.urls().items():
                    with self.subTest(visibility=visibility, who=who, url=name):
                        response = self.client.get(url)
                        if who in MEMBERS and not name.startswith("shared"):
                            self.assertEqual(response.status_code, 200)
                        elif who == "anonymous" and not name.startswith("shared"):
                            self.assertEqual(response.status_code, 302)
                            self.assertTrue(response["Location"].startswith(reverse("login")))
                        else:
                            self.assertEqual(response.status_code, 404)

    def test_no_query_lists_it_for_others(self):
        self.set_visibility(Visibility.PUBLIC)
        image = Image.objects.get(pk=self.image.pk)
        self.assertFalse(image.is_public())
        self.assertFalse(image.shared_by_link())
        self.assertNotIn(image, Image.objects.visible_to(self.outsider))
        self.assertIn(image, Image.objects.visible_to(self.viewer))

    def test_gallery_grids_show_it_blurred_to_its_project_only(self):
        self.login("viewer")
        for url, headers in [
            (reverse("project_gallery", args=[self.project.pk]), {}),
            (reverse("project_gallery", args=[self.project.pk]), HTMX),
            (reverse("team_gallery", args=[self.team.pk]), {}),
        ]:
            with self.subTest(url=url, htmx=bool(headers)):
                response = self.client.get(url, **headers)
                self.assertContains(response, "is-flagged")
                self.assertContains(response, "Held by moderation")
        self.login("outsider")
        for url in (reverse("project_gallery", args=[self.project.pk]),
                    reverse("team_gallery", args=[self.team.pk])):
            self.assertEqual(self.client.get(url).status_code, 404)

    def test_it_cant_be_made_public_while_flagged(self):
        with self.assertRaisesMessage(VisibilityRefused, "failed its moderation scan"):
            image_set_visibility(image=self.image, user=self.editor, visibility="public")


class ApprovedFlaggedImageTests(FlaggedImageTestCase):
    def test_once_approved_it_is_seen_as_its_visibility_says(self):
        moderator = Moderator.objects.create(user=self.admin).user
        case = Case.objects.get(kind=CaseKind.SCAN_FLAG)
        with mock.patch("studio.moderation.scanning.publish"):
            with self.captureOnCommitCallbacks(execute=True):
                case_approve(case=case, moderator=moderator, reason_code="false_positive")
        self.set_visibility(Visibility.PUBLIC)
        self.login("outsider")
        for name, url in self.urls().items():
            with self.subTest(url=name):
                self.assertEqual(self.client.get(url).status_code, 200)


class ExplanationTests(FlaggedImageTestCase):
    def test_its_project_reads_why_it_is_held(self):
        self.login("viewer")
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(
            response,
            "Moderation scan: flagged for review (unsafe 0.70); only this project sees it "
            "until a moderator decides.",
        )

    def test_after_a_decision_it_says_which(self):
        Image.objects.filter(pk=self.image.pk).update(moderation_status="passed")
        self.login("viewer")
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(
            response, "Moderation scan: approved by a moderator (unsafe 0.70)."
        )
