"""The moderator panel: who may see it, team scoping, case actions, suspensions."""

from django.urls import reverse

from studio.accounts.models import User
from studio.moderation.models import (
    AuditEntry,
    Case,
    CaseKind,
    Moderator,
    Policy,
    Standing,
)
from tests.base import StudioTestCase


class ModerationTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.moderator = User.objects.create_user("mona", "mona@example.org", cls.password)
        Moderator.objects.create(user=cls.moderator)
        cls.team_moderator = User.objects.create_user("tom", "tom@example.org", cls.password)
        Moderator.objects.create(user=cls.team_moderator, team=cls.team)
        cls.case = Case.objects.create(
            kind=CaseKind.PROMPT_REPEAT, team=cls.team, subject_user=cls.editor, count=3,
            summary="Latest: “gore” in the prompt.",
        )
        cls.other_case = Case.objects.create(
            kind=CaseKind.PROMPT_REPEAT, team=cls.other_team, subject_user=cls.outsider, count=5
        )

    def act(self, case, **data):
        return self.client.post(
            reverse("moderation_case_act", args=[case.pk]),
            {"reason_code": "tos", "note": "", **data},
        )


class PanelAccessTests(ModerationTestCase):
    def panel_urls(self):
        return [
            reverse("moderation_queue"),
            reverse("moderation_audit"),
            reverse("moderation_suspensions"),
            reverse("moderation_site_policy"),
        ]

    def test_non_moderators_get_404_on_every_panel_page(self):
        for name, user in self.users_by_role().items():
            self.client.force_login(user)
            for url in self.panel_urls():
                with self.subTest(user=name, url=url):
                    self.assertEqual(self.client.get(url).status_code, 404)
            with self.subTest(user=name, action="act"):
                self.assertEqual(self.act(self.case, action="dismiss").status_code, 404)
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, "open")

    def test_anonymous_users_are_sent_to_log_in(self):
        for url in self.panel_urls():
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 302)

    def test_site_moderators_and_superusers_see_every_case(self):
        root = User.objects.create_superuser("root", "root@example.org", self.password)
        for user in (self.moderator, root):
            self.client.force_login(user)
            response = self.client.get(reverse("moderation_queue"))
            self.assertContains(response, f'data-case-id="{self.case.pk}"')
            self.assertContains(response, f'data-case-id="{self.other_case.pk}"')
            self.assertEqual(self.client.get(reverse("moderation_site_policy")).status_code, 200)

    def test_team_moderators_see_only_their_team(self):
        self.client.force_login(self.team_moderator)
        response = self.client.get(reverse("moderation_queue"))
        self.assertContains(response, f'data-case-id="{self.case.pk}"')
        self.assertNotContains(response, f'data-case-id="{self.other_case.pk}"')
        self.assertEqual(self.act(self.other_case, action="dismiss").status_code, 404)
        self.other_case.refresh_from_db()
        self.assertEqual(self.other_case.status, "open")
        # The site policy is the site moderators'.
        self.assertEqual(self.client.get(reverse("moderation_site_policy")).status_code, 404)

    def test_filters_by_reason_and_status(self):
        Case.objects.create(kind=CaseKind.REPORT, team=self.team, subject_image_id=77)
        self.client.force_login(self.moderator)
        response = self.client.get(reverse("moderation_queue"), {"kind": "report"})
        self.assertContains(response, "image #77")
        self.assertNotContains(response, f'data-case-id="{self.case.pk}"')
        self.act(self.case, action="dismiss")
        response = self.client.get(reverse("moderation_queue"))
        self.assertNotContains(response, f'data-case-id="{self.case.pk}"')
        response = self.client.get(reverse("moderation_queue"), {"status": "resolved"})
        self.assertContains(response, f'data-case-id="{self.case.pk}"')


class QueueContentTests(ModerationTestCase):
    def test_repeat_cases_show_the_blocked_prompts_and_the_users_standing(self):
        from studio.moderation.models import PromptBlock

        PromptBlock.objects.create(
            user=self.editor, team=self.team, field="prompt", term="gore", text="so much gore"
        )
        PromptBlock.objects.create(
            user=self.editor, team=self.other_team, field="prompt", term="x", text="elsewhere"
        )
        Standing.objects.create(user=self.editor, warnings=2)
        self.client.force_login(self.moderator)
        response = self.client.get(reverse("moderation_queue"))
        self.assertContains(response, "so much gore")
        self.assertNotContains(response, "elsewhere")
        self.assertContains(response, "2 warnings")

    def test_site_moderators_filter_by_team(self):
        self.client.force_login(self.moderator)
        response = self.client.get(reverse("moderation_queue"), {"team": self.other_team.pk})
        self.assertContains(response, f'data-case-id="{self.other_case.pk}"')
        self.assertNotContains(response, f'data-case-id="{self.case.pk}"')


class CaseActionTests(ModerationTestCase):
    def test_dismiss_resolves_and_is_audited(self):
        self.client.force_login(self.team_moderator)
        response = self.act(self.case, action="dismiss", reason_code="false_positive", note="ok")
        self.assertRedirects(response, reverse("moderation_queue"))
        self.case.refresh_from_db()
        self.assertEqual((self.case.status, self.case.resolution), ("resolved", "dismissed"))
        entry = AuditEntry.objects.get()
        self.assertEqual(
            (entry.actor, entry.action, entry.target, entry.reason_code, entry.note),
            (self.team_moderator, "case.dismiss", f"case:{self.case.pk}", "false_positive", "ok"),
        )
        self.assertEqual(entry.before["status"], "open")
        self.assertEqual(entry.after["status"], "resolved")
        # A resolved case is not resolved twice.
        self.act(self.case, action="approve")
        self.assertEqual(AuditEntry.objects.count(), 1)

    def test_warn_counts_a_warning(self):
        self.client.force_login(self.moderator)
        self.act(self.case, action="warn", reason_code="harassment")
        self.assertEqual(Standing.objects.get(user=self.editor).warnings, 1)
        self.assertEqual(
            sorted(AuditEntry.objects.values_list("action", flat=True)),
            ["case.warn", "user.warn"],
        )

    def test_ban_suspends_generation(self):
        self.client.force_login(self.moderator)
        self.act(self.case, action="ban", reason_code="tos", days="7", note="third time")
        standing = Standing.objects.get(user=self.editor)
        self.assertTrue(standing.is_suspended())
        ban = AuditEntry.objects.get(action="user.ban")
        self.assertIsNone(ban.before["suspended_until"])
        self.assertIsNotNone(ban.after["suspended_until"])

        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("job_create", args=[self.project.pk]),
            {"prompt": "a lighthouse", "model": self.model.pk, "steps": 20,
             "guidance_scale": 7, "width": 512, "height": 512},
            headers={"HX-Request": "true"},
        )
        self.assertContains(response, "may not generate images until", status_code=422)
        self.assertContains(response, "Against the terms of service", status_code=422)

    def test_team_moderators_escalate_to_site_moderators(self):
        self.client.force_login(self.team_moderator)
        self.act(self.case, action="escalate", note="needs a suspension")
        self.case.refresh_from_db()
        self.assertEqual((self.case.status, self.case.escalated), ("open", True))
        entry = AuditEntry.objects.get()
        self.assertEqual((entry.action, entry.before["escalated"]), ("case.escalate", False))
        self.client.force_login(self.moderator)
        response = self.client.get(reverse("moderation_queue"), {"status": "escalated"})
        self.assertContains(response, f'data-case-id="{self.case.pk}"')
        self.assertNotContains(response, f'data-case-id="{self.other_case.pk}"')

    def test_site_moderators_lift_suspensions(self):
        from studio.moderation.services import user_sanction

        user_sanction(user=self.editor, moderator=self.moderator, action="ban", reason_code="spam")
        url = reverse("moderation_suspensions")
        for user in (self.team_moderator, self.owner):
            self.client.force_login(user)
            self.assertEqual(self.client.get(url).status_code, 404)
            self.assertEqual(
                self.client.post(url, {"user": self.editor.pk, "reason_code": "other"}).status_code,
                404,
            )
        self.client.force_login(self.moderator)
        self.assertContains(self.client.get(url), f'data-user-id="{self.editor.pk}"')
        for bad in ("abc", "²", ""):
            with self.subTest(user=bad):
                response = self.client.post(url, {"user": bad, "reason_code": "other"})
                self.assertEqual(response.status_code, 404)
        response = self.client.post(url, {"user": self.editor.pk, "reason_code": "false_positive"})
        self.assertRedirects(response, url)
        self.assertFalse(Standing.objects.get(user=self.editor).is_suspended())
        self.assertEqual(AuditEntry.objects.filter(action="user.unsuspend").count(), 1)

    def test_team_moderators_cannot_suspend(self):
        self.client.force_login(self.team_moderator)
        self.act(self.case, action="ban", days="7")
        self.assertFalse(Standing.objects.exists())
        self.case.refresh_from_db()
        self.assertEqual(self.case.status, "open")


class AuditLogPageTests(ModerationTestCase):
    def test_lists_actions_scoped_to_the_moderators_teams(self):
        self.client.force_login(self.moderator)
        self.act(self.case, action="approve", note="looks fine")
        self.act(self.other_case, action="dismiss", note="elsewhere")
        response = self.client.get(reverse("moderation_audit"))
        self.assertContains(response, "looks fine")
        self.assertContains(response, "elsewhere")
        self.client.force_login(self.team_moderator)
        response = self.client.get(reverse("moderation_audit"))
        self.assertContains(response, "looks fine")
        self.assertNotContains(response, "elsewhere")


class PolicyPageTests(ModerationTestCase):
    def test_site_moderators_edit_the_site_policy_audited(self):
        self.client.force_login(self.moderator)
        url = reverse("moderation_site_policy")
        response = self.client.post(
            url, {"blocked_terms": "gore", "regexes": "", "allowed_terms": ""}
        )
        self.assertRedirects(response, url)
        policy = Policy.objects.get(team=None)
        self.assertEqual((policy.blocked_terms, policy.updated_by), ("gore", self.moderator))
        entry = AuditEntry.objects.get(action="policy.update")
        self.assertEqual(
            (entry.before["blocked_terms"], entry.after["blocked_terms"]), ("", "gore")
        )

    def test_a_bad_regex_is_a_form_error(self):
        self.client.force_login(self.moderator)
        response = self.client.post(
            reverse("moderation_site_policy"),
            {"blocked_terms": "", "regexes": "(?<!no )nudes?", "allowed_terms": ""},
        )
        self.assertEqual(response.status_code, 200)
        self.assertIn("lookbehind", " ".join(response.context["form"].errors["regexes"]))
        self.assertFalse(Policy.objects.exists())

    def test_sample_prompt_shows_what_matched(self):
        Policy.objects.create(blocked_terms="peg", allowed_terms="peg leg")
        Policy.objects.create(team=self.team, blocked_terms="clown")
        self.client.force_login(self.admin)
        url = reverse("team_policy", args=[self.team.pk])
        response = self.client.get(
            url, {"sample": "Clowns with PEGS", "sample_negative": "pegboard"}
        )
        self.assertEqual(response.status_code, 200)
        results = {
            label: [match.term for match in found]
            for label, _, found in response.context["results"]
        }
        self.assertEqual(results, {"Prompt": ["peg", "clown"], "Negative prompt": []})
        self.assertContains(response, "passes")

    def test_team_policies_are_for_team_admins(self):
        url = reverse("team_policy", args=[self.team.pk])
        expected = {"owner": 200, "admin": 200, "editor": 403, "viewer": 403, "outsider": 404}
        for name, user in self.users_by_role().items():
            self.client.force_login(user)
            with self.subTest(user=name):
                self.assertEqual(self.client.get(url).status_code, expected[name])
        self.client.force_login(self.editor)
        self.client.post(url, {"blocked_terms": "x"})
        self.assertFalse(Policy.objects.exists())
        self.client.force_login(self.admin)
        self.client.post(url, {"blocked_terms": "clown", "regexes": "", "allowed_terms": ""})
        self.assertEqual(Policy.objects.get().team, self.team)


class LinksAndCommandTests(ModerationTestCase):
    def test_dashboard_links_the_panel_for_moderators_only(self):
        queue = reverse("moderation_queue")
        cases = ((self.moderator, True), (self.team_moderator, True), (self.owner, False))
        for user, shown in cases:
            self.client.force_login(user)
            response = self.client.get(reverse("dashboard"))
            with self.subTest(user=user.username):
                self.assertEqual(f'href="{queue}"' in response.content.decode(), shown)

    def test_team_page_links_the_policy_for_admins(self):
        url = reverse("team_policy", args=[self.team.pk])
        for user, shown in ((self.admin, True), (self.editor, False)):
            self.client.force_login(user)
            response = self.client.get(reverse("team_detail", args=[self.team.pk]))
            with self.subTest(user=user.username):
                self.assertEqual(f'href="{url}"' in response.content.decode(), shown)

    def test_moderator_command(self):
        from io import StringIO

        from django.core.management import call_command

        call_command("moderator", "dave", "--team", str(self.team.pk), stdout=StringIO())
        self.assertTrue(Moderator.objects.filter(user=self.viewer, team=self.team).exists())
        call_command("moderator", "dave", stdout=StringIO())
        self.assertTrue(Moderator.objects.filter(user=self.viewer, team=None).exists())
        call_command("moderator", "dave", "--remove", stdout=StringIO())
        self.assertFalse(Moderator.objects.filter(user=self.viewer, team=None).exists())
