"""Per-user limits: queued and running images at once, images per hour and training runs
at once; site defaults, which a team's admins may only make stricter. A refusal is a form
error naming the limit, creates nothing and is counted."""

from datetime import timedelta
from unittest import mock

from django.contrib.messages import get_messages
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from generation.models import GenerationJob, JobStatus
from studio.quotas.models import QuotaRefusal, RefusalReason, TeamLimits
from tests.base import GenerateFormTestCase, StudioTestCase, make_job
from tests.generation.training.test_training_jobs import TRAINING_FORM
from tests.subject_builders import make_run, make_subject


class GenerateLimitTestCase(GenerateFormTestCase):
    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse", "model": self.model.pk, "steps": 4,
            "guidance_scale": 7.0, "width": 64, "height": 64, "seed": 1,
        }

    def assert_limit_refusal(self, message, reason, **overrides):
        self.assert_refused("__all__", message, **overrides)
        self.assertEqual(
            list(QuotaRefusal.objects.values_list("user", "team", "reason")),
            [(self.editor.pk, self.team.pk, reason)],
        )


@override_settings(STUDIO_USER_MAX_ACTIVE_IMAGES=5)
class ActiveImagesTests(GenerateLimitTestCase):
    def test_images_queued_or_running_count_against_the_limit(self):
        make_job(self.project, self.editor, self.model, batch_size=2)
        make_job(self.project, self.editor, self.model, batch_size=1, status=JobStatus.RUNNING)
        make_job(self.project, self.editor, self.model, batch_size=8, status=JobStatus.FINISHED)
        make_job(self.project, self.admin, self.model, batch_size=8)  # someone else's

        self.assert_limit_refusal(
            "You have 3 images queued or running and this asks for 3 more; Alpha allows 5 at "
            "once per user.", RefusalReason.ACTIVE_IMAGES, batch_size=3,
        )
        self.assertEqual(self.post(batch_size=2).status_code, 200)

    def test_the_refusal_asks_for_no_field_to_be_fixed(self):
        make_job(self.project, self.editor, self.model, batch_size=5)
        response = self.post()
        self.assertContains(response, "Alpha allows 5 at once per user", status_code=422)
        self.assertNotContains(response, "Fix the highlighted field", status_code=422)

    def test_a_batch_count_is_refused_whole_not_in_part(self):
        self.assert_limit_refusal(
            "this asks for 6 more", RefusalReason.ACTIVE_IMAGES, batch_size=2, batch_count=3,
        )
        self.assertEqual(self.post(batch_size=1, batch_count=5).status_code, 200)
        self.assertEqual(GenerationJob.objects.count(), 5)

    def test_a_team_may_be_stricter(self):
        TeamLimits.objects.create(team=self.team, max_active_images=2)
        self.assert_limit_refusal("Alpha allows 2 at once", RefusalReason.ACTIVE_IMAGES,
                                  batch_size=3)

    def test_a_team_limit_above_a_lowered_site_limit_is_the_sites(self):
        TeamLimits.objects.create(team=self.team, max_active_images=50)
        self.assert_limit_refusal("Alpha allows 5 at once", RefusalReason.ACTIVE_IMAGES,
                                  batch_size=6)

    def test_retrying_past_the_limit_says_so_with_429(self):
        failed = make_job(self.project, self.editor, self.model, status=JobStatus.FAILED,
                          batch_size=4)
        make_job(self.project, self.editor, self.model, batch_size=4)
        response = self.client.post(reverse("job_retry", args=[failed.pk]),
                                    headers={"HX-Request": "true"})
        self.assertEqual(response.status_code, 429)
        [message] = get_messages(response.wsgi_request)
        self.assertIn("Alpha allows 5 at once per user", str(message))
        self.assertEqual(GenerationJob.objects.count(), 2)


@override_settings(STUDIO_USER_IMAGES_PER_HOUR=4)
class ImagesPerHourTests(GenerateLimitTestCase):
    def test_images_asked_for_in_the_last_hour_count_whatever_became_of_them(self):
        make_job(self.project, self.editor, self.model, batch_size=2, status=JobStatus.FINISHED)
        make_job(self.project, self.editor, self.model, batch_size=1, status=JobStatus.CANCELED)
        make_job(self.project, self.editor, self.model, batch_size=4, status=JobStatus.FINISHED,
                 created_at=timezone.now() - timedelta(minutes=61))

        self.assert_limit_refusal(
            "You asked for 3 images in the last hour and this asks for 2 more; Alpha allows 4 "
            "per user per hour. Try again after", RefusalReason.IMAGES_PER_HOUR, batch_size=2,
        )
        self.assertEqual(self.post(batch_size=1).status_code, 200)


class TrainingRunsAtOnceTests(StudioTestCase):
    def post(self, subject):
        self.client.force_login(self.editor)
        data = {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM}
        with mock.patch("generation.training.services.enqueue_training"):
            return self.client.post(reverse("training_start", args=[subject.pk]), data)

    def test_one_run_at_once_by_default(self):
        subject = make_subject(self.team, self.editor)
        make_run(subject, self.project, self.editor, self.model)  # queued

        response = self.post(subject)

        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "You have 1 training run queued or running; Alpha allows "
                            "1 at once per user.", status_code=422)
        self.assertEqual(subject.training_runs.count(), 1)
        self.assertEqual(QuotaRefusal.objects.get().reason, RefusalReason.TRAINING_RUNS)

    def test_an_ended_run_does_not_count(self):
        subject = make_subject(self.team, self.editor)
        make_run(subject, self.project, self.editor, self.model, status=JobStatus.FINISHED)
        self.assertEqual(self.post(subject).status_code, 302)
        self.assertEqual(subject.training_runs.count(), 2)


class LimitsFormTests(StudioTestCase):
    url_name = "team_limits"

    def url(self):
        return reverse(self.url_name, args=[self.team.pk])

    @override_settings(STUDIO_USER_MAX_ACTIVE_IMAGES=100)
    def test_an_admin_sets_stricter_limits(self):
        self.client.force_login(self.admin)
        self.assertContains(self.client.get(self.url()), "Blank: the site's 100.")
        response = self.client.post(self.url(), {"max_active_images": "20",
                                                 "images_per_hour": "", "max_training_runs": "0"})
        self.assertRedirects(response, reverse("team_usage", args=[self.team.pk]))
        limits = TeamLimits.objects.get(team=self.team)
        self.assertEqual((limits.max_active_images, limits.images_per_hour,
                          limits.max_training_runs), (20, None, 0))
        self.assertEqual(limits.updated_by, self.admin)

    @override_settings(STUDIO_USER_MAX_ACTIVE_IMAGES=100)
    def test_more_than_the_site_allows_is_refused_naming_the_field(self):
        self.client.force_login(self.admin)
        response = self.client.post(self.url(), {"max_active_images": "101"})
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "Queued and running images per user: at most 100, the "
                            "site&#x27;s limit.", status_code=422)
        self.assertFalse(TeamLimits.objects.exists())

    def test_bad_input_is_refused_not_a_500(self):
        self.client.force_login(self.admin)
        response = self.client.post(self.url(), {"images_per_hour": "lots"})
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "Enter a whole number.", status_code=422)

    def test_editors_may_not_and_outsiders_get_404(self):
        for user, status in [(self.editor, 403), (self.viewer, 403), (self.outsider, 404)]:
            self.client.force_login(user)
            self.assertEqual(self.client.get(self.url()).status_code, status)
            self.assertEqual(self.client.post(self.url(), {"max_active_images": "1"}).status_code,
                             status)
        self.assertFalse(TeamLimits.objects.exists())
