"""Reports: any signed-in user reports an image, LoRA or user they may see, with a reason
and a note; at most STUDIO_REPORTS_PER_HOUR an hour; reports of one item share one case."""

from datetime import timedelta

from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from gallery.models import Image, ModerationStatus, Visibility
from generation.loras.models import Lora
from studio.moderation.models import Case, CaseKind, Report
from studio.moderation.reports import ReportRefused, report_create
from tests.base import StudioTestCase
from tests.moderation_helpers import make_textured_image


class ReportTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_textured_image(cls.project, cls.editor, cls.model)
        Image.objects.filter(pk=cls.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        cls.lora = Lora.objects.create(
            team=cls.team, name="ink", file="loras/x.safetensors", sha256="a" * 64,
            size_bytes=10, family="sd15", created_by=cls.editor,
        )

    def url(self, kind, pk):
        return reverse("moderation_report", args=[kind, pk])


class ReportPageTests(ReportTestCase):
    def test_a_public_image_is_reported_with_a_reason_and_note(self):
        self.client.force_login(self.outsider)
        url = self.url("image", self.image.pk)
        self.assertContains(self.client.get(url), "Report image #")
        response = self.client.post(url, {"reason": "ownership", "note": "My photo."})
        self.assertRedirects(response, self.image.get_absolute_url())
        report = Report.objects.get()
        self.assertEqual((report.reporter, report.reason, report.note),
                         (self.outsider, "ownership", "My photo."))
        case = report.case
        self.assertEqual(
            (case.kind, case.subject_image_id, case.subject_user, case.team, case.count),
            (CaseKind.REPORT, self.image.pk, self.editor, self.team, 1),
        )

    def test_the_image_page_links_to_the_report_form_for_non_members(self):
        self.client.force_login(self.outsider)
        self.assertContains(
            self.client.get(self.image.get_absolute_url()), self.url("image", self.image.pk)
        )

    def test_a_lora_and_a_user_can_be_reported(self):
        self.client.force_login(self.viewer)
        self.client.post(self.url("lora", self.lora.pk), {"reason": "spam"})
        self.client.force_login(self.outsider)
        self.client.post(self.url("user", self.editor.pk), {"reason": "tos", "note": "Threats"})
        lora_case = Case.objects.get(subject_lora_id=self.lora.pk)
        self.assertEqual((lora_case.team, lora_case.subject_user), (self.team, self.editor))
        user_case = Case.objects.get(subject_lora_id=None, subject_image_id=None)
        self.assertEqual((user_case.team, user_case.subject_user), (None, self.editor))

    def test_what_the_reporter_cant_see_is_404(self):
        Image.objects.filter(pk=self.image.pk).update(visibility=Visibility.PROJECT)
        self.client.force_login(self.outsider)
        for url in (self.url("image", self.image.pk), self.url("lora", self.lora.pk),
                    self.url("image", 99999), self.url("user", 99999),
                    self.url("collection", 1)):
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 404)
                self.assertEqual(self.client.post(url, {"reason": "spam"}).status_code, 404)
        self.assertFalse(Report.objects.exists())

    def test_anonymous_users_are_sent_to_log_in(self):
        response = self.client.get(self.url("image", self.image.pk))
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_bad_input_names_the_field_and_reports_nothing(self):
        self.client.force_login(self.outsider)
        url = self.url("image", self.image.pk)
        for data, field in [({}, "reason"), ({"reason": "boring"}, "reason"),
                            ({"reason": "spam", "note": "x" * 2001}, "note")]:
            with self.subTest(data=data):
                response = self.client.post(url, data)
                self.assertEqual(response.status_code, 422)
                self.assertTrue(response.context["form"].errors[field])
        self.assertFalse(Report.objects.exists())

    def test_reporting_yourself_is_refused(self):
        self.client.force_login(self.outsider)
        response = self.client.post(self.url("user", self.outsider.pk), {"reason": "spam"})
        self.assertEqual(response.status_code, 422)
        errors = response.context["form"].non_field_errors()
        self.assertEqual(errors, ["You can't report yourself."])


class MergingTests(ReportTestCase):
    def test_reports_of_one_item_merge_into_one_case_with_a_count(self):
        for user, reason in [(self.outsider, "nsfw"), (self.viewer, "nsfw"),
                             (self.owner, "spam")]:
            report_create(reporter=user, kind="image", subject=self.image, reason=reason)
        case = Case.objects.get()
        self.assertEqual(case.count, 3)
        self.assertEqual(case.reports.count(), 3)
        self.assertEqual(case.summary, "3 reports: sexual or explicit content ×2, spam ×1.")

    def test_one_person_reports_an_item_once_while_its_case_is_open(self):
        report_create(reporter=self.outsider, kind="image", subject=self.image, reason="nsfw")
        with self.assertRaisesMessage(ReportRefused, "You reported this already"):
            report_create(reporter=self.outsider, kind="image", subject=self.image, reason="tos")
        self.assertEqual(Case.objects.get().count, 1)

    def test_a_report_after_the_case_closed_opens_a_new_one(self):
        report_create(reporter=self.outsider, kind="image", subject=self.image, reason="nsfw")
        Case.objects.update(status="resolved")
        report_create(reporter=self.outsider, kind="image", subject=self.image, reason="nsfw")
        self.assertEqual(Case.objects.count(), 2)


@override_settings(STUDIO_REPORTS_PER_HOUR=3)
class RateLimitTests(ReportTestCase):
    def images(self, count):
        made = []
        for seed in range(count):
            image = make_textured_image(self.project, self.editor, self.model, seed=seed + 10)
            Image.objects.filter(pk=image.pk).update(
                visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
            )
            made.append(image)
        return made

    def test_past_the_hourly_limit_reports_are_refused_with_a_clear_message(self):
        self.client.force_login(self.outsider)
        first, second, third, fourth = self.images(4)
        for image in (first, second, third):
            response = self.client.post(self.url("image", image.pk), {"reason": "spam"})
            self.assertEqual(response.status_code, 302)
        response = self.client.post(self.url("image", fourth.pk), {"reason": "spam"})
        self.assertContains(
            response, "You have sent 3 reports in the last hour", status_code=422
        )
        self.assertEqual(Report.objects.count(), 3)
        self.assertFalse(Case.objects.filter(subject_image_id=fourth.pk).exists())

    def test_the_limit_is_per_user_and_per_hour(self):
        images = self.images(4)
        for image in images[:3]:
            report_create(reporter=self.outsider, kind="image", subject=image, reason="spam")
        report_create(reporter=self.viewer, kind="image", subject=images[3], reason="spam")
        Report.objects.filter(reporter=self.outsider).update(
            created_at=timezone.now() - timedelta(minutes=61)
        )
        report_create(reporter=self.outsider, kind="image", subject=images[3], reason="spam")
        self.assertEqual(Report.objects.count(), 5)
