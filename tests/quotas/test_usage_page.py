"""A team's GPU usage page: its budgets, the last 30 days by day (an SVG chart), by member
and by model, and its refusals; members see it, everyone else gets a 404."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from studio.quotas.models import QuotaRefusal, RefusalReason, TeamBudget
from tests.base import StudioTestCase
from tests.quota_helpers import charge


class UsagePageTests(StudioTestCase):
    def url(self, team=None):
        return reverse("team_usage", args=[(team or self.team).pk])

    def test_usage_by_member_model_and_day(self):
        now = timezone.now()
        charge(self.team, self.editor, 30, model_name="SD 1.5", images=4)
        charge(self.team, self.editor, 12, model_name="SDXL", images=1,
               at=now - timedelta(days=2))
        charge(self.team, self.admin, 8, model_name="SD 1.5", images=2)
        charge(self.team, self.admin, 500, at=now - timedelta(days=45))  # too long ago
        charge(self.other_team, self.outsider, 999)
        self.client.force_login(self.viewer)

        response = self.client.get(self.url())

        self.assertEqual(response.status_code, 200)
        usage = response.context["usage"]
        self.assertEqual(usage["total"], {"gpu_seconds": 50, "images": 7, "jobs": 3})
        self.assertEqual(
            [(row["user__username"], row["gpu_seconds"]) for row in usage["by_member"]],
            [("carol", 42), ("bob", 8)],
        )
        self.assertEqual(
            [(row["model_name"], row["gpu_seconds"], row["images"]) for row in usage["by_model"]],
            [("SD 1.5", 38, 6), ("SDXL", 12, 1)],
        )
        bars = response.context["chart"]["bars"]
        self.assertEqual(len(bars), 30)
        self.assertEqual(bars[-1]["gpu_seconds"], 38)
        self.assertEqual(bars[-3]["gpu_seconds"], 12)
        self.assertEqual(bars[-1]["height"], 160)  # the highest day fills the chart
        self.assertContains(response, '<svg class="usage-chart"')
        self.assertContains(response, "GPU-s</title></rect>", count=30)
        self.assertNotContains(response, "999")

    def test_budget_meters_limits_and_refusals(self):
        TeamBudget.objects.create(team=self.team, monthly_gpu_seconds=200, daily_gpu_seconds=50)
        charge(self.team, self.editor, 45)
        QuotaRefusal.objects.create(team=self.team, user=self.editor,
                                    reason=RefusalReason.MONTHLY_BUDGET)
        self.client.force_login(self.editor)

        response = self.client.get(self.url())

        self.assertEqual([(b["period"], b["percent"]) for b in response.context["budgets"]],
                         [("day", 90), ("month", 22)])
        self.assertContains(response, "90% used")
        self.assertContains(response, "usage-budget is-near")
        self.assertContains(response, "may have 100 images queued or running at once")
        self.assertContains(response, "Monthly GPU budget")
        self.assertNotContains(response, reverse("team_limits", args=[self.team.pk]))

    def test_admins_get_the_limits_link_and_a_team_without_budget_says_so(self):
        self.client.force_login(self.admin)
        response = self.client.get(self.url())
        self.assertContains(response, reverse("team_limits", args=[self.team.pk]))
        self.assertContains(response, "No GPU budget")

    def test_other_team_user_gets_404_and_anonymous_users_log_in(self):
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.url()).status_code, 404)
        self.assertEqual(self.client.get(reverse("team_usage", args=[9999])).status_code, 404)
        self.client.logout()
        response = self.client.get(self.url())
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])

    def test_site_staff_see_any_teams_usage(self):
        staff = type(self.owner).objects.create_user("sam", "s@example.org", "pw", is_staff=True)
        charge(self.team, self.editor, 30)
        self.client.force_login(staff)
        response = self.client.get(self.url())
        self.assertEqual(response.context["usage"]["total"]["gpu_seconds"], 30)
        self.assertNotContains(response, reverse("team_limits", args=[self.team.pk]))

    def test_the_team_page_links_to_it(self):
        self.client.force_login(self.viewer)
        self.assertContains(self.client.get(self.team.get_absolute_url()), self.url())
