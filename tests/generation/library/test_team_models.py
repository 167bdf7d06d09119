"""A team's model page: members see what the team's projects offer them; the team's admins
switch models off for the team or set a minimum role of its own."""

from django.urls import reverse

from generation.models import DiffusionModel, ModelKind, TeamModelSetting
from studio.accounts.models import Role, User
from tests.base import StudioTestCase


class TeamModelsTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.staff = User.objects.create_user("sam", "sam@example.org", cls.password, is_staff=True)
        cls.canny = DiffusionModel.objects.create(
            name="Canny edges", source="lllyasviel/sd-controlnet-canny", kind=ModelKind.CONTROLNET
        )
        DiffusionModel.objects.create(name="Retired", source="owner/retired", is_enabled=False)

    def setUp(self):
        self.page = reverse("team_models", args=[self.team.pk])
        self.setting_url = reverse("team_model_setting", args=[self.team.pk, self.model.pk])

    def post_setting(self, htmx=False, **data):
        data = {f"m{self.model.pk}-{key}": value for key, value in data.items()}
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.post(self.setting_url, data, headers=headers)

    # --- who may -------------------------------------------------------------------

    def test_members_see_the_page_outsiders_get_404(self):
        for role, user in self.users_by_role().items():
            self.client.force_login(user)
            with self.subTest(role=role):
                expected = 404 if role == "outsider" else 200
                self.assertEqual(self.client.get(self.page).status_code, expected)
        self.client.force_login(self.staff)  # staff have no say in a team they are not in
        self.assertEqual(self.client.get(self.page).status_code, 404)

    def test_only_the_teams_admins_change_its_settings(self):
        expected = {"owner": 302, "admin": 302, "editor": 403, "viewer": 403, "outsider": 404}
        for role, user in self.users_by_role().items():
            self.client.force_login(user)
            with self.subTest(role=role):
                self.assertEqual(self.post_setting(min_role="").status_code, expected[role])
        self.client.force_login(self.staff)
        self.assertEqual(self.post_setting(min_role="").status_code, 404)
        self.client.force_login(self.outsider)  # admin of her own team, not of this one
        self.assertEqual(self.post_setting(min_role="owner").status_code, 404)
        self.assertFalse(TeamModelSetting.objects.filter(min_role="owner").exists())

    def test_anonymous_is_sent_to_log_in(self):
        for response in (self.client.get(self.page), self.post_setting(min_role="")):
            self.assertEqual(response.status_code, 302)
            self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_a_switched_off_library_model_cannot_be_set(self):
        retired = DiffusionModel.objects.get(name="Retired")
        self.client.force_login(self.admin)
        url = reverse("team_model_setting", args=[self.team.pk, retired.pk])
        self.assertEqual(self.client.post(url, {}).status_code, 404)

    # --- the page ------------------------------------------------------------------

    def test_admins_get_a_form_per_model(self):
        self.client.force_login(self.admin)
        response = self.client.get(self.page)
        self.assertContains(response, f'action="{self.setting_url}"')
        self.assertContains(response, "Library default (Editor)")
        self.assertContains(response, "Canny edges")
        self.assertNotContains(response, "Retired")  # off for everyone: not the team's choice
        self.assertContains(response, "In the studio")

    def test_members_read_the_settings_without_forms(self):
        TeamModelSetting.objects.create(team=self.team, model=self.model, min_role=Role.ADMIN)
        self.client.force_login(self.editor)
        response = self.client.get(self.page)
        self.assertNotContains(response, f'action="{self.setting_url}"')
        self.assertContains(response, "Admin and up")
        self.assertContains(response, "needs the Admin role in Alpha (you are Editor)")

    def test_the_team_page_links_it(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("team_detail", args=[self.team.pk]))
        self.assertContains(response, f'href="{self.page}"')

    def test_search_and_filters_work_here_too(self):
        self.client.force_login(self.viewer)
        response = self.client.get(self.page, {"kind": "controlnet"})
        self.assertEqual([row["model"].name for row in response.context["rows"]], ["Canny edges"])

    # --- changing a setting -----------------------------------------------------------

    def test_an_admin_switches_a_model_off_for_the_team(self):
        self.client.force_login(self.admin)
        response = self.post_setting(min_role="")  # the box unticked: not posted
        self.assertRedirects(response, self.page)
        setting = TeamModelSetting.objects.get(team=self.team, model=self.model)
        self.assertFalse(setting.is_enabled)
        self.assertEqual(setting.updated_by, self.admin)
        self.assertFalse(TeamModelSetting.objects.filter(team=self.other_team).exists())

    def test_an_admin_sets_a_minimum_role_then_goes_back_to_the_default(self):
        self.client.force_login(self.owner)
        self.post_setting(is_enabled="on", min_role="owner")
        setting = TeamModelSetting.objects.get(team=self.team, model=self.model)
        self.assertEqual((setting.is_enabled, setting.min_role), (True, Role.OWNER))
        self.post_setting(is_enabled="on", min_role="")
        setting.refresh_from_db()
        self.assertEqual(setting.min_role, "")
        self.assertEqual(TeamModelSetting.objects.count(), 1)  # one row per team and model

    def test_htmx_answers_the_row_with_a_confirmation(self):
        self.client.force_login(self.admin)
        response = self.post_setting(htmx=True, is_enabled="on", min_role="admin")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, f'id="team-model-{self.model.pk}"')
        self.assertContains(response, "minimum role: Admin")
        self.assertNotContains(response, "<html")

    def test_a_bad_role_is_refused_naming_it(self):
        self.client.force_login(self.admin)
        response = self.post_setting(htmx=True, is_enabled="on", min_role="viewer")
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "Select a valid choice", status_code=422)
        self.assertFalse(TeamModelSetting.objects.exists())
