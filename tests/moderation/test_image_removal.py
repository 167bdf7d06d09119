"""Removing an image: out of public and link view, its hash blocklisted, its owner told
why (a notification and a removal page), a strike that expires; strikes past the
thresholds suspend publishing, then generating, until they expire."""

from datetime import timedelta
from unittest import mock

from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from gallery.models import Image, ModerationStatus, Visibility
from gallery.sharing import VisibilityRefused, image_set_visibility
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
from studio.moderation.services import UserSuspended, suspension_check
from tests.base import StudioTestCase
from tests.moderation_helpers import make_textured_image


class RemovalTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.moderator = Moderator.objects.create(user=cls.admin).user

    def public_image(self, seed=1):
        image = make_textured_image(self.project, self.editor, self.model, seed=seed)
        Image.objects.filter(pk=image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED,
            share_token=f"token-{seed}".ljust(32, "x"),
        )
        image.refresh_from_db()
        return image

    def reported(self, image):
        report_create(reporter=self.outsider, kind="image", subject=image, reason="nsfw")
        return Case.objects.get(kind=CaseKind.REPORT, subject_image_id=image.pk)

    def remove(self, image, reason_code="nsfw", note=""):
        with mock.patch("studio.moderation.scanning.publish"):
            return case_remove(
                case=self.reported(image), moderator=self.moderator, reason_code=reason_code,
                note=note,
            )


class RemovalTests(RemovalTestCase):
    def test_it_leaves_public_and_link_view_but_stays_in_its_project(self):
        image = self.public_image()
        self.remove(image)
        image.refresh_from_db()
        self.assertEqual(image.visibility, Visibility.PROJECT)
        self.assertEqual(image.moderation_status, ModerationStatus.FAILED)
        self.assertIsNone(image.share_token)
        self.assertFalse(image.is_public())
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(image.get_absolute_url()).status_code, 404)
        self.client.force_login(self.viewer)
        self.assertEqual(self.client.get(image.get_absolute_url()).status_code, 200)

    def test_its_hash_is_blocklisted_and_the_cases_about_it_close(self):
        image = self.public_image()
        removal = self.remove(image)
        self.assertTrue(BlockedHash.objects.filter(source_image_id=image.pk).exists())
        case = Case.objects.get(kind=CaseKind.REPORT)
        self.assertEqual((case.status, case.resolution), (CaseStatus.RESOLVED, Resolution.REMOVED))
        self.assertEqual(removal.case, case)

    def test_the_owner_is_told_why_with_a_link_to_appeal(self):
        image = self.public_image()
        removal = self.remove(image, reason_code="tos", note="Watermarked stock photo.")
        note = Notification.objects.get(user=self.editor)
        self.assertIn("Against the terms of service", note.message)
        self.assertIn("Watermarked stock photo.", note.message)
        self.assertEqual(note.url, removal.get_absolute_url())
        self.client.force_login(self.editor)
        page = self.client.get(reverse("dashboard"))
        self.assertContains(page, "Notifications: 1 unread")
        listing = self.client.get(reverse("notifications"))
        self.assertContains(listing, "Watermarked stock photo.")
        self.assertEqual(Notification.objects.get().read_at is not None, True)
        detail = self.client.get(removal.get_absolute_url())
        self.assertContains(detail, "Against the terms of service")
        self.assertContains(detail, "Send appeal")

    def test_it_is_audited(self):
        image = self.public_image()
        self.remove(image)
        entry = AuditEntry.objects.get(action="image.remove")
        self.assertEqual((entry.actor, entry.target), (self.moderator, f"image:{image.pk}"))
        self.assertEqual(entry.before["visibility"], "public")
        self.assertEqual(entry.after["visibility"], "project")

    def test_removing_twice_is_refused(self):
        image = self.public_image()
        self.remove(image)
        with self.assertRaisesMessage(DecisionRefused, "removed already"):
            case_remove(
                case=Case.objects.create(kind=CaseKind.REPORT, subject_image_id=image.pk),
                moderator=self.moderator, reason_code="nsfw",
            )
        self.assertEqual(Removal.objects.count(), 1)

    def test_others_cant_see_the_removal_page(self):
        removal = self.remove(self.public_image())
        for user in (self.outsider, self.viewer):
            self.client.force_login(user)
            with self.subTest(user=user.username):
                self.assertEqual(self.client.get(removal.get_absolute_url()).status_code, 404)


@override_settings(
    STUDIO_STRIKE_DAYS=30, STUDIO_STRIKES_SUSPEND_PUBLISHING=2,
    STUDIO_STRIKES_SUSPEND_GENERATION=3,
)
class StrikeTests(RemovalTestCase):
    def test_each_removal_is_a_strike_that_expires(self):
        removal = self.remove(self.public_image())
        self.assertAlmostEqual(
            removal.strike_expires_at, timezone.now() + timedelta(days=30),
            delta=timedelta(minutes=1),
        )
        self.assertEqual(Removal.objects.strikes(self.editor).count(), 1)
        later = timezone.now() + timedelta(days=31)
        self.assertEqual(Removal.objects.strikes(self.editor, now=later).count(), 0)

    def test_thresholds_suspend_publishing_then_generating_until_strikes_expire(self):
        self.remove(self.public_image(1))
        standing = Standing.objects.get(user=self.editor)
        self.assertFalse(standing.is_publishing_suspended())
        self.remove(self.public_image(2))
        standing.refresh_from_db()
        self.assertTrue(standing.is_publishing_suspended())
        self.assertFalse(standing.is_suspended())
        fresh = make_textured_image(self.project, self.editor, self.model, seed=9)
        Image.objects.filter(pk=fresh.pk).update(moderation_status=ModerationStatus.PASSED)
        fresh.refresh_from_db()
        with self.assertRaisesMessage(VisibilityRefused, "You may not publish until"):
            image_set_visibility(image=fresh, user=self.editor, visibility="public")
        # Other editors of the project still may; link sharing still works for her.
        image_set_visibility(image=fresh, user=self.owner, visibility="public")
        image_set_visibility(image=fresh, user=self.editor, visibility="unlisted")

        self.remove(self.public_image(3))
        standing.refresh_from_db()
        self.assertTrue(standing.is_suspended())
        self.assertTrue(standing.suspended_by_strikes)
        with self.assertRaises(UserSuspended):
            suspension_check(user=self.editor)
        # Each lasts while enough strikes count: generating (3) until the first of the
        # three expires, publishing (2) until the second does.
        expiries = list(
            Removal.objects.order_by("created_at").values_list("strike_expires_at", flat=True)
        )
        self.assertEqual(standing.suspended_until, expiries[0])
        self.assertEqual(standing.publishing_suspended_until, expiries[1])
        self.assertFalse(standing.is_suspended(now=expiries[0] + timedelta(seconds=1)))
        self.assertFalse(standing.is_publishing_suspended(now=expiries[1] + timedelta(seconds=1)))
        self.assertTrue(AuditEntry.objects.filter(action="user.strikes").exists())

    def test_expired_strikes_dont_count_towards_a_suspension(self):
        self.remove(self.public_image(1))
        Removal.objects.update(strike_expires_at=timezone.now() - timedelta(seconds=1))
        self.remove(self.public_image(2))
        standing = Standing.objects.get(user=self.editor)
        self.assertFalse(standing.is_publishing_suspended())

    def test_a_longer_ban_by_a_moderator_is_kept(self):
        until = timezone.now() + timedelta(days=365)
        Standing.objects.create(user=self.editor, suspended_until=until, reason="Banned")
        for seed in (1, 2, 3):
            self.remove(self.public_image(seed))
        standing = Standing.objects.get(user=self.editor)
        self.assertEqual((standing.suspended_until, standing.suspended_by_strikes), (until, False))


@override_settings(STUDIO_STRIKES_SUSPEND_PUBLISHING=1)
class SuspensionsPageTests(RemovalTestCase):
    def test_a_publishing_suspension_is_listed_and_lifted_with_an_audit_row(self):
        self.remove(self.public_image())
        self.client.force_login(self.moderator)
        page = self.client.get(reverse("moderation_suspensions"))
        self.assertContains(page, "publishing until")
        self.assertContains(page, self.editor.username)
        self.client.post(reverse("moderation_suspensions"),
                         {"user": self.editor.pk, "reason_code": "false_positive"})
        standing = Standing.objects.get(user=self.editor)
        self.assertFalse(standing.is_publishing_suspended())
        self.assertTrue(AuditEntry.objects.filter(action="user.unsuspend").exists())
