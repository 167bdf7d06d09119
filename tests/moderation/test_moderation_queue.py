"""The moderation queue with images: scan scores, reports and age, the image blurred and
served only to the case's moderators; approve / remove / escalate / suspend per case and
in bulk; appeals in their own queue. Non-moderators get 404 everywhere; team moderators
see and act on their teams only; every action writes an audit row."""

from unittest import mock

from django.urls import reverse

from gallery.models import ModerationStatus
from studio.accounts.models import User
from studio.moderation.models import (
    AuditEntry,
    Case,
    CaseKind,
    CaseStatus,
    Moderator,
    Removal,
    Standing,
)
from studio.moderation.removals import removal_appeal
from studio.moderation.reports import report_create
from studio.moderation.scanning import image_scan
from tests.base import StudioTestCase
from tests.moderation_helpers import make_textured_image, scanning_with


class QueueTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        make = cls.owner.__class__.objects.create_user
        cls.site_mod = make("sam", "sam@example.org", cls.password)
        cls.team_mod = make("tina", "tina@example.org", cls.password)
        cls.other_mod = make("oscar", "oscar@example.org", cls.password)
        Moderator.objects.create(user=cls.site_mod)
        Moderator.objects.create(user=cls.team_mod, team=cls.team)
        Moderator.objects.create(user=cls.other_mod, team=cls.other_team)

    def flagged(self, project=None, user=None, seed=1, score=0.6):
        image = make_textured_image(
            project or self.project, user or self.editor, self.model, seed=seed
        )
        settings_, scores = scanning_with(score)
        with settings_, scores, mock.patch("studio.moderation.scanning.publish"):
            image_scan(image_id=image.pk)
        image.refresh_from_db()
        return image, Case.objects.get(subject_image_id=image.pk)

    def act(self, case, action, user=None, **extra):
        self.client.force_login(user or self.site_mod)
        with mock.patch("studio.moderation.scanning.publish"):
            return self.client.post(
                reverse("moderation_case_act", args=[case.pk]),
                {"action": action, "reason_code": "nsfw", "note": "checked", **extra},
            )


class AccessTests(QueueTestCase):
    def panel_urls(self, case):
        return {
            "queue": ("get", reverse("moderation_queue")),
            "appeals": ("get", reverse("moderation_appeals")),
            "audit": ("get", reverse("moderation_audit")),
            "suspensions": ("get", reverse("moderation_suspensions")),
            "site policy": ("get", reverse("moderation_site_policy")),
            "case image": ("get", reverse("moderation_case_image", args=[case.pk])),
            "act": ("post", reverse("moderation_case_act", args=[case.pk])),
            "bulk": ("post", reverse("moderation_case_bulk")),
        }

    def test_non_moderators_get_404_on_every_panel_page(self):
        _, case = self.flagged()
        for user in (self.owner, self.editor, self.viewer, self.outsider):
            self.client.force_login(user)
            for name, (method, url) in self.panel_urls(case).items():
                with self.subTest(user=user.username, page=name):
                    response = getattr(self.client, method)(
                        url, {"action": "approve", "reason_code": "tos", "cases": [case.pk]}
                    )
                    self.assertEqual(response.status_code, 404)
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.OPEN)
        self.assertFalse(AuditEntry.objects.exists())

    def test_anonymous_users_are_sent_to_log_in(self):
        _, case = self.flagged()
        for name, (method, url) in self.panel_urls(case).items():
            with self.subTest(page=name):
                response = getattr(self.client, method)(url)
                self.assertEqual(response.status_code, 302)
                self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_team_moderators_see_only_their_team(self):
        image, case = self.flagged()
        other_image, other_case = self.flagged(self.other_project, self.outsider, seed=2)
        self.client.force_login(self.team_mod)
        page = self.client.get(reverse("moderation_queue"))
        self.assertEqual([c.pk for c in page.context["cases"]], [case.pk])
        self.assertEqual(
            self.client.get(reverse("moderation_case_image", args=[case.pk])).status_code, 200
        )
        # Its files gone from storage: a 404 that says so, not a 500.
        for name in (image.file.name, *image.thumbnails.values()):
            image.file.storage.delete(name)
        self.assertEqual(
            self.client.get(reverse("moderation_case_image", args=[case.pk])).status_code, 404
        )
        self.assertEqual(
            self.client.get(reverse("moderation_case_image", args=[other_case.pk])).status_code,
            404,
        )
        self.assertEqual(self.act(other_case, "remove", user=self.team_mod).status_code, 404)
        self.client.force_login(self.team_mod)
        response = self.client.post(
            reverse("moderation_case_bulk"),
            {"action": "approve", "reason_code": "tos", "cases": [other_case.pk]},
        )
        self.assertRedirects(response, reverse("moderation_queue"))
        other_case.refresh_from_db()
        self.assertEqual(other_case.status, CaseStatus.OPEN)
        self.assertFalse(AuditEntry.objects.exists())
        # The site moderator sees both.
        self.client.force_login(self.site_mod)
        page = self.client.get(reverse("moderation_queue"))
        self.assertEqual({c.pk for c in page.context["cases"]}, {case.pk, other_case.pk})


class QueuePageTests(QueueTestCase):
    def test_image_cases_show_scores_age_reports_and_a_blurred_image(self):
        image, case = self.flagged(score=0.62)
        report_create(reporter=self.outsider, kind="user", subject=self.editor, reason="spam",
                      note="Posts the same thing everywhere")
        self.client.force_login(self.site_mod)
        response = self.client.get(reverse("moderation_queue"))
        self.assertContains(response, 'class="mod-media is-blurred"')
        self.assertContains(response, reverse("moderation_case_image", args=[case.pk]))
        self.assertContains(response, 'data-score="0.620"')
        self.assertContains(response, "opened just now")
        self.assertContains(response, "Posts the same thing everywhere")
        self.assertContains(response, "<kbd>a</kbd> approve")
        filtered = self.client.get(reverse("moderation_queue"), {"kind": "report"})
        self.assertEqual([c.kind for c in filtered.context["cases"]], [CaseKind.REPORT])

    def test_the_case_image_is_the_image(self):
        image, case = self.flagged()
        self.client.force_login(self.site_mod)
        response = self.client.get(reverse("moderation_case_image", args=[case.pk]))
        self.assertEqual(response["Content-Type"], "image/png")
        self.assertEqual(response["Cache-Control"], "private, no-store")


class ActionAuditTests(QueueTestCase):
    def test_every_action_writes_an_audit_row(self):
        cases = {}
        for seed, action in enumerate(["approve", "remove", "dismiss", "warn", "ban"], 1):
            cases[action] = self.flagged(seed=seed)[1]
        cases["escalate"] = self.flagged(seed=9)[1]
        for action, case in cases.items():
            user = self.team_mod if action == "escalate" else self.site_mod
            before = AuditEntry.objects.count()
            with self.subTest(action=action):
                response = self.act(case, action, user=user)
                self.assertRedirects(response, reverse("moderation_queue"))
                self.assertGreater(AuditEntry.objects.count(), before)
                entry = AuditEntry.objects.filter(action=f"case.{action}").get()
                self.assertEqual((entry.actor, entry.target, entry.reason_code, entry.note),
                                 (user, f"case:{case.pk}", "nsfw", "checked"))
        # Appeals of two removals: one upheld, one denied, by another site moderator.
        self.act(self.flagged(seed=10)[1], "remove")
        reviewer = Moderator.objects.create(user=User.objects.create_user("rev")).user
        for removal, action in zip(Removal.objects.order_by("id"), ("uphold", "deny"), strict=True):
            appealed = removal_appeal(removal=removal, user=self.editor, note="Look again")
            with self.subTest(action=action):
                self.act(appealed.appeal_case, action, user=reviewer)
                self.assertTrue(AuditEntry.objects.filter(action=f"case.{action}").exists())
        self.assertTrue(AuditEntry.objects.filter(action="removal.appeal").exists())

    def test_approving_a_flagged_image_passes_it(self):
        image, case = self.flagged()
        self.act(case, "approve")
        image.refresh_from_db()
        self.assertEqual(image.moderation_status, ModerationStatus.PASSED)
        self.assertTrue(AuditEntry.objects.filter(action="image.approve").exists())

    def test_refused_actions_say_why_and_change_nothing(self):
        _, case = self.flagged()
        response = self.act(case, "ban", user=self.team_mod)
        self.assertRedirects(response, reverse("moderation_queue"), fetch_redirect_response=False)
        page = self.client.get(reverse("moderation_queue"))
        self.assertContains(page, "Only site moderators suspend accounts")
        bad = self.act(case, "launch")
        self.assertEqual(bad.status_code, 302)
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.OPEN)
        self.assertFalse(AuditEntry.objects.exists())


class BulkTests(QueueTestCase):
    def test_one_action_for_every_selected_case_each_audited(self):
        (first, a), (second, b), (_, c) = (self.flagged(seed=n) for n in (1, 2, 3))
        self.client.force_login(self.site_mod)
        with mock.patch("studio.moderation.scanning.publish"):
            response = self.client.post(reverse("moderation_case_bulk"), {
                "cases": [a.pk, b.pk], "action": "remove", "reason_code": "nsfw", "note": "",
            })
        self.assertRedirects(response, reverse("moderation_queue"))
        for case in (a, b):
            case.refresh_from_db()
            self.assertEqual(case.status, CaseStatus.RESOLVED)
        c.refresh_from_db()
        self.assertEqual(c.status, CaseStatus.OPEN)
        self.assertEqual(AuditEntry.objects.filter(action="case.remove").count(), 2)
        self.assertEqual(Removal.objects.count(), 2)

    def test_no_suspensions_in_bulk(self):
        _, case = self.flagged()
        self.client.force_login(self.site_mod)
        response = self.client.post(
            reverse("moderation_case_bulk"),
            {"action": "ban", "reason_code": "tos", "cases": [case.pk]}, follow=True,
        )
        self.assertContains(response, "Bulk action: Select a valid choice")
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.OPEN)
        self.assertFalse(Standing.objects.filter(suspended_until__isnull=False).exists())

    def test_nothing_selected_or_already_decided_is_reported(self):
        _, case = self.flagged()
        self.client.force_login(self.site_mod)
        response = self.client.post(
            reverse("moderation_case_bulk"), {"action": "approve", "reason_code": "tos"},
            follow=True,
        )
        self.assertContains(response, "Bulk action: Select at least one case.")
        self.act(case, "approve")
        response = self.client.post(
            reverse("moderation_case_bulk"),
            {"action": "approve", "reason_code": "tos", "cases": [case.pk]}, follow=True,
        )
        self.assertContains(response, f"case {case.pk}: Case {case.pk} is already resolved.")
