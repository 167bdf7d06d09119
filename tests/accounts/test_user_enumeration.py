"""Pages that name a user (the report form) open only for users the viewer already sees:
a teammate, the maker of an image they may open, who added a public LoRA. Any other id is
the same 404 as one that doesn't exist, so ids can't be walked to list accounts."""

from django.urls import reverse

from gallery.models import Image, ModerationStatus, Visibility
from generation.loras.models import Lora
from studio.accounts.models import User
from studio.moderation.models import Moderator, Report
from tests.base import StudioTestCase, make_image, make_job
from tests.lora_builders import make_lora


class ReportUserVisibilityTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.loner = User.objects.create_user("gina", "gina@example.org", cls.password)

    def report_page(self, viewer, user_id):
        self.client.force_login(viewer)
        return self.client.get(reverse("moderation_report", args=["user", user_id]))

    def report(self, viewer, user_id):
        self.client.force_login(viewer)
        url = reverse("moderation_report", args=["user", user_id])
        return self.client.post(url, {"reason": "spam", "note": ""})

    def test_a_teammate_is_visible(self):
        response = self.report_page(self.viewer, self.editor.pk)
        self.assertContains(response, "user carol")

    def test_a_user_seen_nowhere_is_a_404_like_a_missing_id(self):
        for user_id in (self.loner.pk, self.owner.pk, 999_999):
            with self.subTest(user_id=user_id):
                self.assertEqual(self.report_page(self.outsider, user_id).status_code, 404)
        self.assertEqual(self.report(self.outsider, self.owner.pk).status_code, 404)
        self.assertFalse(Report.objects.exists())

    def test_the_maker_of_a_public_image_is_visible(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.assertEqual(self.report_page(self.outsider, self.editor.pk).status_code, 404)
        Image.objects.filter(pk=image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        self.assertEqual(self.report_page(self.outsider, self.editor.pk).status_code, 200)
        self.assertEqual(self.report(self.outsider, self.editor.pk).status_code, 302)
        self.assertEqual(Report.objects.get().case.subject_user, self.editor)

    def test_a_public_image_not_yet_passed_or_deleted_reveals_nobody(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        Image.objects.filter(pk=image.pk).update(visibility=Visibility.PUBLIC)
        self.assertEqual(self.report_page(self.outsider, self.editor.pk).status_code, 404)
        Image.objects.filter(pk=image.pk).update(moderation_status=ModerationStatus.PASSED)
        image.refresh_from_db()
        Image.all_objects.filter(pk=image.pk).update(deleted_at=image.created_at)
        self.assertEqual(self.report_page(self.outsider, self.editor.pk).status_code, 404)

    def test_who_added_a_public_lora_is_visible(self):
        lora = make_lora(self.team, self.admin, "ink wash")
        self.assertEqual(self.report_page(self.outsider, self.admin.pk).status_code, 404)
        Lora.objects.filter(pk=lora.pk).update(is_public=True)
        self.assertEqual(self.report_page(self.outsider, self.admin.pk).status_code, 200)

    def test_site_moderators_see_everyone(self):
        Moderator.objects.create(user=self.outsider)
        self.assertEqual(self.report_page(self.outsider, self.loner.pk).status_code, 200)

    def test_an_inactive_user_is_a_404_even_to_teammates(self):
        User.objects.filter(pk=self.editor.pk).update(is_active=False)
        self.assertEqual(self.report_page(self.viewer, self.editor.pk).status_code, 404)
