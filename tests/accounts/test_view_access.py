"""The role matrix for every view that takes an object id: anonymous users are sent to
log in, outsiders get 404, members below the needed role get 403, the rest get through."""

from unittest import mock

from django.urls import reverse

from studio.accounts.models import Membership, Role
from tests.base import StudioTestCase, make_image, make_job

RANKS = ["viewer", "editor", "admin", "owner"]


class ViewAccessTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.job = make_job(cls.project, cls.editor, cls.model)
        cls.image = make_image(cls.job)
        cls.member = Membership.objects.get(team=cls.team, user=cls.viewer)

    def cases(self):
        """(method, url, data, least role) for each view."""
        generate = {"prompt": "a red fox", "model": self.model.pk, "steps": 4,
                    "guidance_scale": 7, "width": 64, "height": 64}
        return [
            ("get", reverse("team_detail", args=[self.team.pk]), None, "viewer"),
            ("post", reverse("project_create", args=[self.team.pk]), {"name": "New"}, "editor"),
            ("post", reverse("invitation_create", args=[self.team.pk]), {"role": "editor"},
             "admin"),
            ("post", reverse("member_update", args=[self.team.pk, self.member.pk]),
             {"role": "viewer"}, "admin"),
            ("get", reverse("project_studio", args=[self.project.pk]), None, "viewer"),
            ("post", reverse("job_create", args=[self.project.pk]), generate, "editor"),
            ("get", reverse("project_jobs", args=[self.project.pk]), None, "viewer"),
            ("get", reverse("job_detail", args=[self.job.pk]), None, "viewer"),
            ("get", reverse("image_detail", args=[self.image.pk]), None, "viewer"),
            ("get", reverse("image_card", args=[self.image.pk]), None, "viewer"),
            ("get", reverse("image_file", args=[self.image.pk]), None, "viewer"),
            ("get", reverse("team_models", args=[self.team.pk]), None, "viewer"),
            ("post", reverse("team_model_setting", args=[self.team.pk, self.model.pk]),
             {f"m{self.model.pk}-is_enabled": "on"}, "admin"),
        ]

    def request(self, method, url, data):
        with mock.patch("generation.services.enqueue_generation"):
            with self.captureOnCommitCallbacks(execute=True):
                return getattr(self.client, method)(url, data or {})

    def test_anonymous_is_sent_to_log_in(self):
        for method, url, data, _ in self.cases():
            with self.subTest(url=url):
                response = self.request(method, url, data)
                self.assertEqual(response.status_code, 302)
                self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_outsider_gets_404(self):
        self.client.force_login(self.outsider)
        for method, url, data, _ in self.cases():
            with self.subTest(url=url):
                self.assertEqual(self.request(method, url, data).status_code, 404)

    def test_members_by_role(self):
        for role, user in self.users_by_role().items():
            if role == "outsider":
                continue
            self.client.force_login(user)
            for method, url, data, least in self.cases():
                with self.subTest(role=role, url=url):
                    status = self.request(method, url, data).status_code
                    if RANKS.index(role) >= RANKS.index(least):
                        self.assertIn(status, (200, 302))
                    else:
                        self.assertEqual(status, 403)
                # Keep the member under test a viewer for the next role's turn.
                Membership.objects.filter(pk=self.member.pk).update(role=Role.VIEWER)
