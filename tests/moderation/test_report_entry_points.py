"""Where reports start: a public LoRA's page ("Report") and the image page's "Report user"
next to who made a public image, for signed-in people outside the team. Reports from there
open or merge into one case, are rate-limited, and send the reporter back where they were."""

from django.test import override_settings
from django.urls import reverse

from gallery.models import Image, ModerationStatus, Visibility
from generation.loras.models import Lora
from studio.accounts.models import Membership, Role, User
from studio.moderation.models import Case, CaseKind, Report
from tests.base import StudioTestCase, make_image, make_job
from tests.lora_builders import make_lora


class EntryPointTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.lora = make_lora(cls.team, cls.editor, "ink wash")
        Lora.objects.filter(pk=cls.lora.pk).update(is_public=True)
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model))
        Image.objects.filter(pk=cls.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        # A second outsider, in the outsider's team, to see reports merge.
        cls.stranger = User.objects.create_user("frank", "frank@example.org", cls.password)
        Membership.objects.create(team=cls.other_team, user=cls.stranger, role=Role.EDITOR)

    def report(self, user, kind, pk, reason="spam", note="", next_url=""):
        self.client.force_login(user)
        url = reverse("moderation_report", args=[kind, pk])
        if next_url:
            url += f"?next={next_url}"
        return self.client.post(url, {"reason": reason, "note": note})


class PublicLoraReportTests(EntryPointTestCase):
    def page(self):
        return reverse("public_lora_detail", args=[self.lora.pk])

    def test_signed_in_outsiders_get_a_report_link(self):
        link = reverse("moderation_report", args=["lora", self.lora.pk])
        self.client.force_login(self.outsider)
        self.assertContains(self.client.get(self.page()), f'href="{link}"')
        self.client.force_login(self.editor)  # its team fixes its own LoRAs
        self.assertNotContains(self.client.get(self.page()), link)
        self.client.logout()
        self.assertNotContains(self.client.get(self.page()), link)

    def test_reports_open_one_case_and_merge_and_lead_back_to_the_public_page(self):
        response = self.report(self.outsider, "lora", self.lora.pk, note="Someone else's art")
        self.assertRedirects(response, self.page())
        self.report(self.stranger, "lora", self.lora.pk, reason="ownership")
        case = Case.objects.get(kind=CaseKind.REPORT)
        self.assertEqual(
            (case.subject_lora_id, case.team, case.subject_user, case.count),
            (self.lora.pk, self.team, self.editor, 2),
        )
        self.assertEqual(case.reports.count(), 2)

    def test_a_private_lora_has_no_public_page_to_report_from(self):
        Lora.objects.filter(pk=self.lora.pk).update(is_public=False)
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.page()).status_code, 404)
        response = self.report(self.outsider, "lora", self.lora.pk)
        self.assertEqual(response.status_code, 404)
        self.assertFalse(Report.objects.exists())


class ReportUserTests(EntryPointTestCase):
    def link(self):
        return reverse("moderation_report", args=["user", self.editor.pk])

    def test_the_image_page_offers_it_to_signed_in_outsiders_only(self):
        self.client.force_login(self.outsider)
        self.assertContains(self.client.get(self.image.get_absolute_url()), "Report user")
        self.client.force_login(self.viewer)
        self.assertNotContains(self.client.get(self.image.get_absolute_url()), "Report user")
        self.client.logout()
        self.assertNotContains(
            self.client.get(reverse("image_shared", args=[self.image_token()])), "Report user"
        )

    def image_token(self):
        self.image.refresh_from_db()
        if not self.image.share_token:
            Image.objects.filter(pk=self.image.pk).update(share_token="r" * 32)
            self.image.refresh_from_db()
        return self.image.share_token

    def test_reports_of_the_user_merge_and_go_back_to_the_image(self):
        back = self.image.get_absolute_url()
        response = self.report(self.outsider, "user", self.editor.pk, next_url=back)
        self.assertRedirects(response, back)
        self.report(self.stranger, "user", self.editor.pk, reason="tos")
        case = Case.objects.get(kind=CaseKind.REPORT)
        self.assertEqual(
            (case.subject_user, case.team, case.subject_image_id, case.count),
            (self.editor, None, None, 2),
        )

    def test_a_next_elsewhere_is_ignored(self):
        response = self.report(self.outsider, "user", self.editor.pk,
                               next_url="https://evil.example/")
        self.assertRedirects(response, "/", fetch_redirect_response=False)

    @override_settings(STUDIO_REPORTS_PER_HOUR=1)
    def test_the_rate_limit_holds_from_these_pages_too(self):
        self.report(self.outsider, "lora", self.lora.pk)
        response = self.report(self.outsider, "user", self.editor.pk)
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "the most we take", status_code=422)
        self.assertEqual(Report.objects.count(), 1)
        self.assertFalse(Case.objects.filter(subject_user=self.editor, subject_lora_id=None)
                         .exists())
