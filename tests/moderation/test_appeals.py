"""Appeals: the owner of a removed image appeals once with a note; the appeal waits in its
own queue; another moderator upholds it (the image comes back as it was, the strike and
the blocked hash go, the owner is told) or denies it."""

from unittest import mock

from django.test import override_settings
from django.urls import reverse

from gallery.models import Image, ModerationStatus, Visibility
from studio.moderation.models import (
    AuditEntry,
    BlockedHash,
    Case,
    CaseKind,
    CaseStatus,
    Moderator,
    Notification,
    Removal,
    Resolution,
    Standing,
)
from studio.moderation.removals import DecisionRefused, case_remove
from studio.moderation.reports import report_create
from tests.base import StudioTestCase
from tests.moderation_helpers import make_textured_image


class AppealTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.remover = Moderator.objects.create(user=cls.admin).user
        cls.reviewer = Moderator.objects.create(user=cls.owner).user

    def setUp(self):
        self.image = make_textured_image(self.project, self.editor, self.model)
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED,
            share_token="a" * 32,
        )
        report_create(reporter=self.outsider, kind="image", subject=self.image, reason="nsfw")
        with mock.patch("studio.moderation.scanning.publish"):
            self.removal = case_remove(
                case=Case.objects.get(), moderator=self.remover, reason_code="nsfw"
            )

    def appeal(self, note="It is a painting of a statue.", user=None):
        self.client.force_login(user or self.editor)
        return self.client.post(self.removal.get_absolute_url(), {"note": note})

    def decide(self, action, moderator=None):
        self.client.force_login(moderator or self.reviewer)
        case = Case.objects.get(kind=CaseKind.APPEAL)
        with mock.patch("studio.moderation.scanning.publish"):
            with self.captureOnCommitCallbacks(execute=True):
                return self.client.post(
                    reverse("moderation_case_act", args=[case.pk]),
                    {"action": action, "reason_code": "false_positive", "note": "Art."},
                )


class AppealTests(AppealTestCase):
    def test_round_trip_upheld_restores_the_image_and_lifts_the_strike(self):
        response = self.appeal()
        self.assertRedirects(response, self.removal.get_absolute_url())
        case = Case.objects.get(kind=CaseKind.APPEAL)
        # The remover is a site moderator: site moderators review it, not the team's.
        self.assertEqual((case.subject_user, case.subject_image_id, case.team),
                         (self.editor, self.image.pk, None))
        self.client.force_login(self.reviewer)
        queue = self.client.get(reverse("moderation_appeals"))
        self.assertContains(queue, "It is a painting of a statue.")
        self.assertNotContains(self.client.get(reverse("moderation_queue")), f"Case {case.pk}<")

        response = self.decide("uphold")
        self.assertRedirects(response, reverse("moderation_appeals"))
        self.image.refresh_from_db()
        self.assertEqual(
            (self.image.visibility, self.image.moderation_status, self.image.share_token),
            (Visibility.PUBLIC, ModerationStatus.PASSED, "a" * 32),
        )
        self.assertTrue(self.image.is_public())
        self.removal.refresh_from_db()
        self.assertIsNotNone(self.removal.restored_at)
        self.assertEqual(Removal.objects.strikes(self.editor).count(), 0)
        self.assertFalse(BlockedHash.objects.exists())
        case.refresh_from_db()
        self.assertEqual((case.status, case.resolution), (CaseStatus.RESOLVED, Resolution.UPHELD))
        self.assertIn("was upheld", Notification.objects.filter(user=self.editor).first().message)
        self.assertTrue(AuditEntry.objects.filter(action="image.restore").exists())
        self.assertTrue(AuditEntry.objects.filter(action="case.uphold").exists())

    def test_denied_the_removal_stands(self):
        self.appeal()
        self.decide("deny")
        self.image.refresh_from_db()
        self.assertEqual(self.image.moderation_status, ModerationStatus.FAILED)
        self.assertEqual(Removal.objects.strikes(self.editor).count(), 1)
        self.assertIn("was denied", Notification.objects.filter(user=self.editor).first().message)

    def test_an_owner_appeals_once(self):
        self.appeal()
        response = self.appeal("Second try.")
        self.assertEqual(response.status_code, 422)
        self.assertEqual(Case.objects.filter(kind=CaseKind.APPEAL).count(), 1)
        self.assertNotContains(response, "Send appeal", status_code=422)

    def test_a_note_is_required(self):
        response = self.appeal(note="   ")
        self.assertEqual(response.status_code, 422)
        self.assertTrue(response.context["form"].errors["note"])
        self.assertFalse(Case.objects.filter(kind=CaseKind.APPEAL).exists())

    def test_only_the_owner_appeals(self):
        for user in (self.outsider, self.viewer, self.remover):
            with self.subTest(user=user.username):
                response = self.appeal(user=user)
                self.assertEqual(response.status_code, 404)
        self.assertFalse(Case.objects.filter(kind=CaseKind.APPEAL).exists())

    def test_the_removing_moderator_does_not_decide_the_appeal(self):
        self.appeal()
        self.decide("uphold", moderator=self.remover)
        case = Case.objects.get(kind=CaseKind.APPEAL)
        self.assertEqual(case.status, CaseStatus.OPEN)
        self.assertFalse(Removal.objects.get().restored_at)

    def test_appeal_actions_are_only_for_appeals_and_the_other_way_round(self):
        from studio.moderation.removals import case_decide

        self.appeal()
        appeal = Case.objects.get(kind=CaseKind.APPEAL)
        with self.assertRaisesMessage(DecisionRefused, "Appeals are upheld or denied."):
            case_decide(case=appeal, moderator=self.reviewer, action="approve",
                        reason_code="tos", site_moderator=True)
        other = Case.objects.create(kind=CaseKind.REPORT, subject_user=self.editor)
        with self.assertRaisesMessage(DecisionRefused, "Only appeals are upheld or denied."):
            case_decide(case=other, moderator=self.reviewer, action="uphold",
                        reason_code="tos", site_moderator=True)


@override_settings(STUDIO_STRIKES_SUSPEND_PUBLISHING=1)
class AppealSuspensionTests(AppealTestCase):
    def test_an_upheld_appeal_ends_the_suspension_its_strike_caused(self):
        self.assertTrue(Standing.objects.get(user=self.editor).is_publishing_suspended())
        self.appeal()
        self.decide("uphold")
        self.assertFalse(Standing.objects.get(user=self.editor).is_publishing_suspended())


class AppealReviewerTests(AppealTestCase):
    def test_a_site_removal_is_not_for_the_teams_own_moderators(self):
        team_moderator = Moderator.objects.create(user=self.viewer, team=self.team).user
        self.appeal()
        case = Case.objects.get(kind=CaseKind.APPEAL)
        self.client.force_login(team_moderator)
        self.assertNotContains(self.client.get(reverse("moderation_appeals")), "painting")
        response = self.client.post(
            reverse("moderation_case_act", args=[case.pk]),
            {"action": "uphold", "reason_code": "other"},
        )
        self.assertEqual(response.status_code, 404)
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.OPEN)
        self.assertTrue(BlockedHash.objects.exists())

    def test_a_team_moderators_removal_is_appealed_to_the_team(self):
        Removal.objects.all().delete()
        team_remover = Moderator.objects.create(user=self.viewer, team=self.team).user
        report_create(reporter=self.outsider, kind="image", subject=self.image, reason="spam")
        with mock.patch("studio.moderation.scanning.publish"):
            self.removal = case_remove(
                case=Case.objects.filter(status=CaseStatus.OPEN).get(), moderator=team_remover,
                reason_code="spam",
            )
        self.appeal()
        self.assertEqual(Case.objects.get(kind=CaseKind.APPEAL).team, self.team)
