"""Team GPU budgets: set by site staff per day and per month, charged from what workers
spent; at 80% the team's admins are told once a period, past 100% new jobs are refused
naming the budget and when it resets; site staff see every team's usage."""

from datetime import timedelta
from unittest import mock

from django.urls import reverse
from django.utils import timezone

from generation.models import JobStatus
from studio.moderation.models import Notification
from studio.quotas.charging import usage_charge
from studio.quotas.models import (
    BudgetPeriod,
    QuotaRefusal,
    RefusalReason,
    TeamBudget,
    WorkerReport,
    period_bounds,
)
from tests.base import GenerateFormTestCase, StudioTestCase, make_job
from tests.generation.training.test_training_jobs import TRAINING_FORM
from tests.quota_helpers import charge, fake_result
from tests.subject_builders import make_run, make_subject


def resets(period):
    return timezone.localtime(period_bounds(period)[1]).strftime("%Y-%m-%d %H:%M %Z")


class BudgetRefusalTests(GenerateFormTestCase):
    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse", "model": self.model.pk, "steps": 4,
            "guidance_scale": 7.0, "width": 64, "height": 64, "seed": 1,
        }

    def test_a_used_up_monthly_budget_refuses_new_jobs_naming_it_and_its_reset(self):
        TeamBudget.objects.create(team=self.team, monthly_gpu_seconds=1000)
        charge(self.team, self.admin, 1000)

        self.assert_refused(
            "__all__",
            "The monthly GPU budget of Alpha, 1,000 GPU-seconds, is used up. It resets at "
            f"{resets(BudgetPeriod.MONTH)}",
        )
        refusal = QuotaRefusal.objects.get()
        self.assertEqual((refusal.user, refusal.reason),
                         (self.editor, RefusalReason.MONTHLY_BUDGET))

    def test_a_job_that_would_overrun_the_budget_is_refused_saying_what_is_left(self):
        TeamBudget.objects.create(team=self.team, daily_gpu_seconds=100)
        charge(self.team, self.editor, 90)
        self.assert_refused(
            "__all__", "The daily GPU budget of Alpha, 100 GPU-seconds, has 10 GPU-seconds "
            "left and this needs about", width=1024, height=1024, steps=100,
        )
        self.assertEqual(self.post().status_code, 200)  # a small job still fits
        charge(self.team, self.editor, 10)
        self.assert_refused("__all__", "The daily GPU budget of Alpha, 100 GPU-seconds, is used "
                            f"up. It resets at {resets(BudgetPeriod.DAY)}")
        self.assertEqual(QuotaRefusal.objects.filter(reason=RefusalReason.DAILY_BUDGET).count(),
                         2)

    def test_queued_and_running_work_counts_as_spent_until_it_is_charged(self):
        TeamBudget.objects.create(team=self.team, monthly_gpu_seconds=100)
        charge(self.team, self.admin, 40)
        # About 16 GPU-seconds each (a megapixel, 100 steps), one of them another user's.
        make_job(self.project, self.admin, self.model, width=1024, height=1024, steps=100)
        make_job(self.project, self.editor, self.model, width=1024, height=1024, steps=100,
                 status=JobStatus.RUNNING)
        subject = make_subject(self.team, self.admin, images=0)
        make_run(subject, self.project, self.admin, self.model, estimated_seconds=25)
        make_job(self.other_project, self.outsider, self.model, width=1024, height=1024,
                 steps=1000)  # another team's

        self.assert_refused(
            "__all__", "The monthly GPU budget of Alpha, 100 GPU-seconds, has 3 GPU-seconds left "
            "and this needs about 16 (40 spent, 57 expected for queued and running work).",
            width=1024, height=1024, steps=100,
        )
        self.assertEqual(self.post().status_code, 200)

    def test_usage_of_earlier_periods_and_other_teams_does_not_count(self):
        TeamBudget.objects.create(team=self.team, daily_gpu_seconds=100, monthly_gpu_seconds=500)
        month_start, _ = period_bounds(BudgetPeriod.MONTH)
        charge(self.team, self.editor, 1000, at=month_start - timedelta(seconds=1))
        charge(self.other_team, self.outsider, 1000)
        day_start, _ = period_bounds(BudgetPeriod.DAY)
        if day_start > month_start:  # yesterday is in this month: it counts for the month only
            charge(self.team, self.editor, 450, at=day_start - timedelta(seconds=1))
        self.assertEqual(self.post().status_code, 200)

    def test_no_budget_no_limit(self):
        charge(self.team, self.editor, 10**9)
        self.assertEqual(self.post().status_code, 200)

    def test_a_training_run_past_the_budget_is_refused(self):
        TeamBudget.objects.create(team=self.team, monthly_gpu_seconds=20)
        subject = make_subject(self.team, self.editor)
        data = {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM}
        with mock.patch("generation.training.services.enqueue_training"):
            response = self.client.post(reverse("training_start", args=[subject.pk]), data)
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "The monthly GPU budget of Alpha, 20 GPU-seconds, has 20 "
                            "GPU-seconds left and this needs about",
                            status_code=422)
        self.assertFalse(subject.training_runs.exists())


class BudgetAlertTests(StudioTestCase):
    def finish(self, seconds):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        usage_charge(job=job, passes=[[fake_result(elapsed_s=seconds, batch_size=1)]])

    def test_admins_are_told_once_when_80_percent_is_spent(self):
        TeamBudget.objects.create(team=self.team, monthly_gpu_seconds=100)
        self.finish(79)
        self.assertFalse(Notification.objects.exists())

        self.finish(2)
        self.finish(10)  # still this period: no second notice

        notices = Notification.objects.order_by("user__username")
        self.assertEqual([n.user for n in notices], [self.owner, self.admin])
        self.assertIn("Alpha has used 81% of its monthly GPU budget (81 of 100 GPU-seconds). "
                      f"At 100% new jobs are refused until it resets at "
                      f"{resets(BudgetPeriod.MONTH)}.", notices[0].message)
        self.assertEqual(notices[0].url, reverse("team_usage", args=[self.team.pk]))

    def test_each_period_alerts_on_its_own(self):
        TeamBudget.objects.create(team=self.team, monthly_gpu_seconds=1000, daily_gpu_seconds=10)
        self.finish(9)
        self.assertEqual(Notification.objects.filter(message__contains="daily").count(), 2)
        self.assertFalse(Notification.objects.filter(message__contains="monthly").exists())


class SiteUsagePageTests(StudioTestCase):
    def setUp(self):
        self.staff = type(self.owner).objects.create_user("sam", "s@example.org", "pw",
                                                          is_staff=True)

    def test_staff_see_every_teams_usage_budget_and_refusals(self):
        TeamBudget.objects.create(team=self.team, monthly_gpu_seconds=5000)
        charge(self.team, self.editor, 1234)
        charge(self.other_team, self.outsider, 55)
        QuotaRefusal.objects.create(team=self.team, user=self.editor,
                                    reason=RefusalReason.ACTIVE_IMAGES)
        self.client.force_login(self.staff)

        response = self.client.get(reverse("site_usage"))

        rows = {row["team"]: row for row in response.context["rows"]}
        self.assertEqual((rows[self.team]["month"], rows[self.team]["refusals"]), (1234, 1))
        self.assertEqual(rows[self.other_team]["month"], 55)
        self.assertContains(response, "1,234")
        self.assertContains(response, "5,000")

    def test_staff_see_what_the_workers_reported(self):
        WorkerReport.objects.create(worker="gpu-1:42", device="NVIDIA H100 80GB HBM3",
                                    gpu_memory_bytes=80 * 1024**3, step_seconds={"sdxl": 0.21})
        self.client.force_login(self.staff)
        response = self.client.get(reverse("site_usage"))
        self.assertContains(response, "NVIDIA H100 80GB HBM3")
        self.assertContains(response, "80.0\xa0GB")
        self.assertContains(response, "sdxl 0.210")

    def test_staff_set_a_budget(self):
        self.client.force_login(self.staff)
        prefix = f"team-{self.team.pk}"
        response = self.client.post(reverse("team_budget", args=[self.team.pk]), {
            f"{prefix}-monthly_gpu_seconds": "36000", f"{prefix}-daily_gpu_seconds": "",
        })
        self.assertRedirects(response, reverse("site_usage"))
        budget = TeamBudget.objects.get(team=self.team)
        self.assertEqual((budget.monthly_gpu_seconds, budget.daily_gpu_seconds, budget.updated_by),
                         (36000, None, self.staff))

    def test_a_daily_budget_above_the_monthly_one_is_refused_naming_the_field(self):
        self.client.force_login(self.staff)
        prefix = f"team-{self.team.pk}"
        response = self.client.post(reverse("team_budget", args=[self.team.pk]), {
            f"{prefix}-monthly_gpu_seconds": "100", f"{prefix}-daily_gpu_seconds": "200",
        })
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "GPU-seconds per day (200) can&#x27;t exceed those per "
                            "month (100).", status_code=422)
        response = self.client.post(reverse("team_budget", args=[self.team.pk]), {
            f"{prefix}-monthly_gpu_seconds": "-5",
        })
        self.assertEqual(response.status_code, 422)
        self.assertFalse(TeamBudget.objects.exists())

    def test_everyone_else_gets_404(self):
        for user in [self.owner, self.admin, self.editor, self.outsider]:
            self.client.force_login(user)
            self.assertEqual(self.client.get(reverse("site_usage")).status_code, 404)
            response = self.client.post(reverse("team_budget", args=[self.team.pk]),
                                        {f"team-{self.team.pk}-monthly_gpu_seconds": "1"})
            self.assertEqual(response.status_code, 404)
        self.assertFalse(TeamBudget.objects.exists())
