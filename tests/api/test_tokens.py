"""Personal access tokens: stored hashed, scoped to a team (and projects) and a role no
higher than the user's, revocable at once; accepted as a Bearer token without CSRF."""

from datetime import timedelta
from io import StringIO

from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studio.accounts.models import Membership, Project, Role
from studio.api.models import ApiToken
from studio.api.tokens import digest, token_revoke
from tests.api.base import ApiTestCase


class TokenModelTests(ApiTestCase):
    def test_only_a_keyed_hash_of_the_secret_is_stored(self):
        secret = self.token(self.editor)
        token = ApiToken.objects.get()
        self.assertTrue(secret.startswith("stu_"))
        self.assertGreaterEqual(len(secret), 4 + 43)  # 256 bits in base64
        self.assertNotIn(secret, [token.digest, token.prefix, token.name])
        self.assertEqual(token.digest, digest(secret))
        self.assertTrue(secret.startswith(token.prefix))

    def test_a_role_above_the_users_own_is_refused(self):
        with self.assertRaises(ValidationError) as caught:
            self.token(self.editor, role=Role.ADMIN)
        self.assertIn("role", caught.exception.message_dict)
        self.assertFalse(ApiToken.objects.exists())

    def test_another_teams_project_or_team_is_refused(self):
        with self.assertRaises(ValidationError) as caught:
            self.token(self.editor, projects=[self.other_project])
        self.assertIn("projects", caught.exception.message_dict)
        with self.assertRaises(ValidationError) as caught:
            self.token(self.editor, team=self.other_team, role=Role.VIEWER)
        self.assertIn("team", caught.exception.message_dict)

    def test_an_expiry_out_of_range_is_refused(self):
        with self.assertRaises(ValidationError) as caught:
            self.token(self.editor, days=0)
        self.assertIn("days", caught.exception.message_dict)


class BearerAuthenticationTests(ApiTestCase):
    def test_a_token_authenticates_and_records_its_last_use(self):
        secret = self.token(self.editor)
        response = self.api("get", "/projects", secret)
        self.assertEqual(response.status_code, 200)
        self.assertEqual([project["id"] for project in response.json()], [self.project.pk])
        self.assertIsNotNone(ApiToken.objects.get().last_used_at)

    def test_no_credentials_get_a_401_problem(self):
        body = self.assert_problem(self.api("get", "/projects"), 401)
        self.assertIn("Bearer", body["detail"])

    def test_an_unknown_token_is_refused_even_with_a_session(self):
        self.client.force_login(self.editor)
        response = self.api("get", "/projects", "stu_not-a-real-token")
        self.assert_problem(response, 401)

    def test_a_revoked_token_is_refused_at_once(self):
        secret = self.token(self.editor)
        self.assertEqual(self.api("get", "/projects", secret).status_code, 200)
        token_revoke(token=ApiToken.objects.get(), by=self.editor)
        self.assert_problem(self.api("get", "/projects", secret), 401)

    def test_an_expired_token_is_refused(self):
        secret = self.token(self.editor)
        ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        self.assert_problem(self.api("get", "/projects", secret), 401)

    def test_a_deactivated_users_token_is_refused(self):
        secret = self.token(self.editor)
        self.editor.is_active = False
        self.editor.save()
        self.assert_problem(self.api("get", "/projects", secret), 401)

    def test_token_requests_need_no_csrf_but_session_requests_do(self):
        client = Client(enforce_csrf_checks=True)
        secret = self.token(self.editor)
        job = client.post(
            f"/api/v1/projects/{self.project.pk}/jobs",
            data={"prompt": "a fox", "model": self.model.pk, "steps": 4, "width": 64,
                  "height": 64, "guidance_scale": 7},
            content_type="application/json",
            headers={"Authorization": f"Bearer {secret}"},
        )
        self.assertEqual(job.status_code, 201, job.content)
        client.force_login(self.editor)
        refused = client.post(
            f"/api/v1/jobs/{job.json()['jobs'][0]['id']}/cancel",
            content_type="application/json",
        )
        self.assertEqual(refused.status_code, 403)
        self.assertIn("CSRF", refused.content.decode())

    def test_a_session_reads_the_api_too(self):
        self.client.force_login(self.viewer)
        response = self.client.get("/api/v1/projects")
        self.assertEqual(response.status_code, 200)


class TokenScopeTests(ApiTestCase):
    def test_a_token_sees_only_its_team(self):
        Membership.objects.create(team=self.other_team, user=self.editor, role=Role.EDITOR)
        secret = self.token(self.editor)
        response = self.api("get", f"/projects/{self.other_project.pk}", secret)
        self.assert_problem(response, 404)
        ids = [project["id"] for project in self.api("get", "/projects", secret).json()]
        self.assertEqual(ids, [self.project.pk])

    def test_a_token_limited_to_projects_sees_only_those(self):
        second = Project.objects.create(team=self.team, name="Second", created_by=self.owner)
        secret = self.token(self.editor, projects=[second])
        self.assert_problem(self.api("get", f"/projects/{self.project.pk}", secret), 404)
        self.assertEqual(self.api("get", f"/projects/{second.pk}", secret).status_code, 200)

    def test_a_viewer_token_of_an_editor_may_not_generate(self):
        secret = self.token(self.editor, role=Role.VIEWER)
        response = self.api(
            "post", f"/projects/{self.project.pk}/jobs", secret,
            json={"prompt": "a fox", "model": self.model.pk},
        )
        self.assert_problem(response, 403)

    def test_a_demoted_user_token_loses_what_the_user_lost(self):
        secret = self.token(self.editor)
        Membership.objects.filter(user=self.editor).update(role=Role.VIEWER)
        response = self.api(
            "post", f"/projects/{self.project.pk}/jobs", secret,
            json={"prompt": "a fox", "model": self.model.pk},
        )
        self.assert_problem(response, 403)

    def test_a_removed_member_token_sees_nothing(self):
        secret = self.token(self.editor)
        Membership.objects.filter(user=self.editor).delete()
        self.assert_problem(self.api("get", f"/projects/{self.project.pk}", secret), 404)
        self.assertEqual(self.api("get", "/projects", secret).json(), [])


class TokenPageTests(ApiTestCase):
    url = reverse("api_tokens")

    def test_the_account_menu_links_the_page(self):
        self.client.force_login(self.editor)
        self.assertContains(self.client.get(reverse("dashboard")), self.url)

    def test_a_new_token_is_shown_once(self):
        self.client.force_login(self.editor)
        response = self.client.post(
            self.url,
            {"name": "CI", "team": self.team.pk, "role": Role.EDITOR, "days": 30},
        )
        self.assertEqual(response.status_code, 201)
        secret = response.context["secret"]
        self.assertContains(response, secret, status_code=201)
        self.assertEqual(response["Cache-Control"], "no-store")
        self.assertEqual(self.api("get", "/projects", secret).status_code, 200)
        again = self.client.get(self.url)
        self.assertNotContains(again, secret)
        self.assertContains(again, "CI")

    def test_a_role_above_the_users_is_a_field_error(self):
        self.client.force_login(self.editor)
        response = self.client.post(
            self.url, {"name": "CI", "team": self.team.pk, "role": Role.OWNER, "days": 30}
        )
        self.assertEqual(response.status_code, 422)
        self.assertIn("role", response.context["form"].errors)
        self.assertFalse(ApiToken.objects.exists())

    def test_another_teams_team_is_a_field_error(self):
        self.client.force_login(self.editor)
        response = self.client.post(
            self.url, {"name": "CI", "team": self.other_team.pk, "role": "viewer", "days": 30}
        )
        self.assertEqual(response.status_code, 422)
        self.assertIn("team", response.context["form"].errors)

    def test_the_owner_revokes_their_token(self):
        secret = self.token(self.editor)
        token = ApiToken.objects.get()
        self.client.force_login(self.editor)
        response = self.client.post(reverse("api_token_revoke", args=[token.pk]))
        self.assertRedirects(response, self.url)
        self.assert_problem(self.api("get", "/projects", secret), 401)

    def test_team_admins_see_and_revoke_members_tokens(self):
        secret = self.token(self.editor)
        token = ApiToken.objects.get()
        self.client.force_login(self.admin)
        page = self.client.get(self.url)
        self.assertEqual([t.pk for t in page.context["team_tokens"]], [token.pk])
        self.client.post(reverse("api_token_revoke", args=[token.pk]))
        self.assert_problem(self.api("get", "/projects", secret), 401)

    def test_other_users_can_neither_see_nor_revoke_a_token(self):
        secret = self.token(self.editor)
        token = ApiToken.objects.get()
        for user in (self.viewer, self.outsider):
            self.client.force_login(user)
            page = self.client.get(self.url)
            self.assertEqual(page.context["own_tokens"] + page.context["team_tokens"], [])
            response = self.client.post(reverse("api_token_revoke", args=[token.pk]))
            self.assertEqual(response.status_code, 404)
        self.assertEqual(self.api("get", "/projects", secret).status_code, 200)

    def test_anonymous_users_are_sent_to_log_in(self):
        response = self.client.get(self.url)
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])


class ApiTokenCommandTests(ApiTestCase):
    def run_command(self, *args):
        out = StringIO()
        call_command("api_token", *args, stdout=out, stderr=StringIO())
        return out.getvalue().strip().splitlines()[-1]

    def test_prints_a_working_token_on_its_last_line(self):
        secret = self.run_command("carol", "--name", "script")
        token = ApiToken.objects.get()
        self.assertEqual((token.name, token.team, token.role), ("script", self.team, "editor"))
        self.assertEqual(self.api("get", "/projects", secret).status_code, 200)

    def test_a_project_limits_the_token_and_picks_its_team(self):
        secret = self.run_command("eve", "--project", str(self.other_project.pk))
        token = ApiToken.objects.get()
        self.assertEqual(token.team, self.other_team)
        self.assertEqual(list(token.projects.all()), [self.other_project])
        self.assertEqual(self.api("get", "/projects", secret).json()[0]["id"],
                         self.other_project.pk)

    def test_the_demo_user_gets_a_token(self):
        call_command("setup_demo", stdout=StringIO())
        secret = self.run_command("demo")
        self.assertEqual(self.api("get", "/projects", secret).status_code, 200)

    def test_bad_input_is_a_clear_error(self):
        with self.assertRaisesMessage(CommandError, "No user named 'nobody'"):
            self.run_command("nobody")
        with self.assertRaisesMessage(CommandError, "is not in team"):
            self.run_command("carol", "--team", str(self.other_team.pk))
        with self.assertRaisesMessage(CommandError, "can't be above yours"):
            self.run_command("carol", "--role", "owner")
        self.assertFalse(ApiToken.objects.exists())
