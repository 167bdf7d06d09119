"""Publishing approval: the site policy's "Public images and collections need a moderator's
approval". Off, a passed scan is enough to make an image public; on, making an image or a
collection public opens a publishing request for the site moderators and nothing is public
(Explore, pages, files, thumbnails) until one approves; denying leaves it as it was and
tells its owner why."""

from django.urls import reverse

from gallery.collections.models import Collection, CollectionItem, CollectionVisibility
from gallery.models import Image, ModerationStatus, Visibility
from gallery.thumbnails import image_thumbnails_make
from generation.loras.models import Lora
from studio.accounts.models import User
from studio.moderation.models import (
    AuditEntry,
    Case,
    CaseKind,
    CaseStatus,
    Moderator,
    Notification,
    Policy,
    Resolution,
)
from studio.moderation.public_loras.services import lora_publish_request
from tests.base import StudioTestCase
from tests.lora_builders import make_lora
from tests.moderation_helpers import make_textured_image


class PublishingTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_textured_image(cls.project, cls.editor, cls.model, seed=3)
        image_thumbnails_make(image_id=cls.image.pk)
        Image.objects.filter(pk=cls.image.pk).update(moderation_status=ModerationStatus.PASSED)
        cls.image.refresh_from_db()
        cls.site_moderator = User.objects.create_user("mod", "mod@example.org", cls.password)
        Moderator.objects.create(user=cls.site_moderator)
        cls.team_moderator = User.objects.create_user("tmod", "tmod@example.org", cls.password)
        Moderator.objects.create(user=cls.team_moderator, team=cls.team)

    def require_approval(self, on=True):
        Policy.objects.update_or_create(team=None, defaults={"publishing_needs_approval": on})

    def make_public(self, image=None):
        self.client.force_login(self.editor)
        return self.client.post(
            reverse("image_visibility", args=[(image or self.image).pk]),
            {"visibility": "public"}, follow=True,
        )

    def act(self, case, action, reason_code="other", note=""):
        self.client.force_login(self.site_moderator)
        return self.client.post(
            reverse("moderation_case_act", args=[case.pk]),
            {"action": action, "reason_code": reason_code, "note": note}, follow=True,
        )

    def image_urls(self):
        pk = self.image.pk
        return [
            reverse("image_detail", args=[pk]),
            reverse("image_card", args=[pk]),
            reverse("image_file", args=[pk]),
            reverse("image_download_clean", args=[pk]),
            reverse("image_thumbnail", args=[pk, 256]),
            reverse("image_thumbnail", args=[pk, 512]),
        ]

    def assert_not_public(self):
        self.image.refresh_from_db()
        self.assertNotEqual(self.image.visibility, Visibility.PUBLIC)
        self.assertFalse(self.image.is_public())
        self.assertFalse(Image.objects.visible_to(self.outsider).filter(pk=self.image.pk).exists())
        self.client.force_login(self.outsider)
        explore = self.client.get(reverse("explore"))
        self.assertNotIn(self.image, list(explore.context["images"]))
        for url in self.image_urls():
            with self.subTest(url=url, who="outsider"):
                self.assertEqual(self.client.get(url).status_code, 404)
        self.client.logout()
        for url in self.image_urls():
            with self.subTest(url=url, who="anonymous"):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 302)
                self.assertIn(reverse("login"), response["Location"])


class SitePolicySettingTests(PublishingTestCase):
    def test_site_moderators_switch_it_on_the_site_policy_page_audited(self):
        self.client.force_login(self.site_moderator)
        page = self.client.get(reverse("moderation_site_policy"))
        self.assertContains(page, "Public images and collections need a moderator")
        response = self.client.post(
            reverse("moderation_site_policy"), {"publishing_needs_approval": "on"}
        )
        self.assertEqual(response.status_code, 302)
        self.assertTrue(Policy.objects.get(team=None).publishing_needs_approval)
        entry = AuditEntry.objects.get(action="policy.update")
        self.assertEqual((entry.actor, entry.target), (self.site_moderator, "policy:site"))
        self.assertEqual(
            (entry.before["publishing_needs_approval"], entry.after["publishing_needs_approval"]),
            (False, True),
        )

    def test_team_policies_dont_have_it(self):
        self.client.force_login(self.owner)
        page = self.client.get(reverse("team_policy", args=[self.team.pk]))
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, "publishing_needs_approval")

    def test_others_cant_reach_the_site_policy(self):
        for user in (self.owner, self.team_moderator):
            self.client.force_login(user)
            response = self.client.post(
                reverse("moderation_site_policy"), {"publishing_needs_approval": "on"}
            )
            self.assertEqual(response.status_code, 404)
        self.assertFalse(Policy.objects.filter(publishing_needs_approval=True).exists())


class ImagePublishingTests(PublishingTestCase):
    def test_off_a_passed_scan_is_enough(self):
        self.require_approval(on=False)
        response = self.make_public()
        self.assertContains(response, "Visible to: public.")
        self.image.refresh_from_db()
        self.assertTrue(self.image.is_public())
        self.assertFalse(Case.objects.filter(kind=CaseKind.PUBLISH_REQUEST).exists())

    def test_on_making_it_public_asks_the_site_moderators_and_nothing_is_public_meanwhile(self):
        self.require_approval()
        Image.objects.filter(pk=self.image.pk).update(visibility=Visibility.TEAM)
        self.client.force_login(self.editor)
        page = self.client.get(self.image.get_absolute_url())
        self.assertContains(page, "Everyone, once a site moderator approves")
        response = self.client.post(reverse("image_visibility", args=[self.image.pk]),
                                    {"visibility": "public"}, HTTP_HX_REQUEST="true")
        self.assertContains(response, "Waiting for a moderator")
        self.assertContains(response, "stays visible to team")
        response = self.make_public()
        self.assertContains(response, "Publishing requested: a moderator decides")
        self.assertContains(response, "Waiting for a moderator")
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.assertEqual(
            (case.subject_image_id, case.subject_user, case.team, case.status),
            (self.image.pk, self.editor, None, CaseStatus.OPEN),
        )
        self.image.refresh_from_db()
        self.assertEqual(self.image.visibility, Visibility.TEAM)  # as it was
        self.assert_not_public()
        # Asking again keeps the one request.
        self.make_public()
        self.assertEqual(Case.objects.filter(kind=CaseKind.PUBLISH_REQUEST).count(), 1)

    def test_the_request_is_in_the_site_moderators_queue_under_its_own_filter(self):
        self.require_approval()
        self.make_public()
        self.client.force_login(self.site_moderator)
        queue = self.client.get(reverse("moderation_queue"), {"kind": "publish_request"})
        self.assertContains(queue, "Publishing request")
        self.assertContains(queue, f"image #{self.image.pk}")
        self.assertContains(queue, 'value="deny"')
        self.client.force_login(self.team_moderator)
        queue = self.client.get(reverse("moderation_queue"))
        self.assertNotContains(queue, f"image #{self.image.pk}")

    def test_approval_makes_it_public_audited_and_tells_the_owner(self):
        self.require_approval()
        self.make_public()
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.act(case, "approve")
        self.image.refresh_from_db()
        self.assertTrue(self.image.is_public())
        self.assertTrue(self.image.share_token)
        case.refresh_from_db()
        self.assertEqual((case.status, case.resolution), (CaseStatus.RESOLVED, Resolution.APPROVED))
        entry = AuditEntry.objects.get(action="image.publish")
        self.assertEqual(entry.after["visibility"], "public")
        self.assertIn("it is public now", Notification.objects.get(user=self.editor).message)
        self.client.force_login(self.outsider)
        self.assertIn(self.image, list(self.client.get(reverse("explore")).context["images"]))
        for url in self.image_urls():
            self.assertEqual(self.client.get(url).status_code, 200, url)
        self.client.force_login(self.editor)
        self.assertNotContains(
            self.client.get(self.image.get_absolute_url()), "Waiting for a moderator"
        )

    def test_a_team_moderator_approving_a_report_leaves_the_publishing_request(self):
        from studio.moderation.reports import report_create

        self.require_approval()
        self.make_public()
        report_create(reporter=self.outsider, kind="image", subject=self.image, reason="spam")
        report = Case.objects.get(kind=CaseKind.REPORT)
        self.client.force_login(self.team_moderator)
        self.client.post(reverse("moderation_case_act", args=[report.pk]),
                         {"action": "approve", "reason_code": "other"})
        report.refresh_from_db()
        self.assertEqual(report.status, CaseStatus.RESOLVED)
        request = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.assertEqual(request.status, CaseStatus.OPEN)  # a site moderator's to decide
        self.assert_not_public()

    def test_bulk_approving_related_cases_publishes_once(self):
        from studio.moderation.reports import report_create

        self.require_approval()
        self.make_public()
        report_create(reporter=self.outsider, kind="image", subject=self.image, reason="spam")
        cases = list(Case.objects.values_list("pk", flat=True))
        self.client.force_login(self.site_moderator)
        response = self.client.post(
            reverse("moderation_case_bulk"),
            {"cases": cases, "action": "approve", "reason_code": "other"}, follow=True,
        )
        self.assertContains(response, "is already resolved")
        self.assertEqual(AuditEntry.objects.filter(action="image.publish").count(), 1)
        self.assertEqual(Notification.objects.filter(user=self.editor).count(), 1)

    def test_approval_after_strikes_suspended_its_owner_publishes_nothing(self):
        from datetime import timedelta

        from django.utils import timezone

        from studio.moderation.models import Standing

        self.require_approval()
        self.make_public()
        Standing.objects.create(
            user=self.editor, publishing_suspended_until=timezone.now() + timedelta(days=2)
        )
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.act(case, "approve")
        self.assert_not_public()
        self.assertFalse(AuditEntry.objects.filter(action="image.publish").exists())
        message = Notification.objects.get(user=self.editor).message
        self.assertIn("was not carried out. You may not publish until", message)
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.RESOLVED)

    def test_denial_leaves_it_as_it_was_and_tells_the_owner_why(self):
        self.require_approval()
        self.make_public()
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        response = self.act(case, "deny", reason_code="spam", note="Posted ten times today.")
        self.assertContains(response, "denied")
        case.refresh_from_db()
        self.assertEqual((case.status, case.resolution), (CaseStatus.RESOLVED, Resolution.DENIED))
        self.assert_not_public()
        self.assertEqual(self.image.visibility, Visibility.PROJECT)
        notice = Notification.objects.get(user=self.editor)
        self.assertIn("did not publish your image", notice.message)
        self.assertIn("Spam", notice.message)
        self.assertIn("Posted ten times today.", notice.message)
        self.assertEqual(notice.url, self.image.get_absolute_url())
        entry = AuditEntry.objects.get(action="case.deny")
        self.assertEqual((entry.actor, entry.reason_code), (self.site_moderator, "spam"))

    def test_choosing_another_visibility_withdraws_the_request(self):
        self.require_approval()
        self.make_public()
        self.client.post(reverse("image_visibility", args=[self.image.pk]), {"visibility": "team"})
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.assertEqual(
            (case.status, case.resolution), (CaseStatus.RESOLVED, Resolution.DISMISSED)
        )
        self.image.refresh_from_db()
        self.assertEqual(self.image.visibility, Visibility.TEAM)

    def test_an_unscanned_image_is_refused_before_any_request(self):
        self.require_approval()
        Image.objects.filter(pk=self.image.pk).update(moderation_status=ModerationStatus.PENDING)
        response = self.make_public()
        self.assertContains(response, "must pass a moderation scan first")
        self.assertFalse(Case.objects.filter(kind=CaseKind.PUBLISH_REQUEST).exists())

    def test_viewers_cant_ask(self):
        self.require_approval()
        self.client.force_login(self.viewer)
        response = self.client.post(
            reverse("image_visibility", args=[self.image.pk]), {"visibility": "public"}
        )
        self.assertEqual(response.status_code, 403)
        self.client.force_login(self.outsider)
        response = self.client.post(
            reverse("image_visibility", args=[self.image.pk]), {"visibility": "public"}
        )
        self.assertEqual(response.status_code, 404)
        self.assertFalse(Case.objects.filter(kind=CaseKind.PUBLISH_REQUEST).exists())

    def test_denying_is_only_for_publishing_requests(self):
        case = Case.objects.create(kind=CaseKind.SCAN_FLAG, subject_image_id=self.image.pk,
                                   team=self.team, subject_user=self.editor)
        response = self.act(case, "deny")
        self.assertContains(response, "Only appeals are upheld or denied.")
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.OPEN)


class CollectionPublishingTests(PublishingTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.public_image = make_textured_image(cls.project, cls.editor, cls.model, seed=4)
        Image.objects.filter(pk=cls.public_image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        cls.collection = Collection.objects.create(
            team=cls.team, name="Picks", visibility=CollectionVisibility.TEAM,
            created_by=cls.editor,
        )
        for position, image in enumerate((cls.image, cls.public_image)):
            CollectionItem.objects.create(collection=cls.collection, image=image,
                                          position=position)

    def edit(self, visibility="public"):
        self.client.force_login(self.editor)
        return self.client.post(
            reverse("collection_edit", args=[self.collection.pk]),
            {"name": "Picks", "description": "", "visibility": visibility}, follow=True,
        )

    def test_off_it_is_public_at_once(self):
        self.edit()
        self.collection.refresh_from_db()
        self.assertEqual(self.collection.visibility, CollectionVisibility.PUBLIC)
        self.assertFalse(Case.objects.filter(kind=CaseKind.PUBLISH_REQUEST).exists())

    def test_on_it_waits_hidden_then_approval_shows_only_its_public_images(self):
        self.require_approval()
        response = self.edit()
        self.assertContains(response, "Publishing requested: a moderator decides")
        self.assertContains(response, "Waiting for a moderator")
        self.collection.refresh_from_db()
        self.assertEqual(self.collection.visibility, CollectionVisibility.TEAM)
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.assertEqual((case.subject_collection_id, case.team), (self.collection.pk, None))
        url = self.collection.get_absolute_url()
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(url).status_code, 404)
        self.client.logout()
        self.assertEqual(self.client.get(url).status_code, 302)

        self.client.force_login(self.site_moderator)
        queue = self.client.get(reverse("moderation_queue"), {"kind": "publish_request"})
        self.assertContains(queue, "Picks")
        self.assertContains(queue, "2 images, 1 of them public")
        self.act(case, "approve")
        self.collection.refresh_from_db()
        self.assertEqual(self.collection.visibility, CollectionVisibility.PUBLIC)
        self.assertTrue(AuditEntry.objects.filter(action="collection.publish").exists())
        self.client.force_login(self.outsider)
        page = self.client.get(url)
        self.assertEqual(page.status_code, 200)
        self.assertEqual(list(page.context["images"]), [self.public_image])

    def test_denial_keeps_it_and_tells_the_owner(self):
        self.require_approval()
        self.edit()
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.act(case, "deny", reason_code="tos")
        self.collection.refresh_from_db()
        self.assertEqual(self.collection.visibility, CollectionVisibility.TEAM)
        notice = Notification.objects.get(user=self.editor)
        self.assertIn("did not publish your collection “Picks”", notice.message)
        self.assertEqual(notice.url, self.collection.get_absolute_url())

    def test_a_collection_is_denied_never_removed(self):
        self.require_approval()
        self.edit()
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        response = self.act(case, "remove")
        self.assertContains(response, "A collection isn&#x27;t removed")
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.OPEN)

    def test_a_new_public_collection_starts_private_and_waits(self):
        self.require_approval()
        self.client.force_login(self.editor)
        response = self.client.post(reverse("collection_new", args=[self.team.pk]),
                                    {"name": "Fresh", "visibility": "public"}, follow=True)
        self.assertContains(response, "Waiting for a moderator")
        fresh = Collection.objects.get(name="Fresh")
        self.assertEqual(fresh.visibility, CollectionVisibility.PRIVATE)
        self.assertTrue(Case.objects.filter(subject_collection_id=fresh.pk).exists())

    def test_choosing_another_visibility_withdraws_it(self):
        self.require_approval()
        self.edit()
        self.edit("unlisted")
        case = Case.objects.get(kind=CaseKind.PUBLISH_REQUEST)
        self.assertEqual(case.resolution, Resolution.DISMISSED)
        self.collection.refresh_from_db()
        self.assertEqual(self.collection.visibility, CollectionVisibility.UNLISTED)


class LoraPublishingDenialTests(PublishingTestCase):
    def test_a_lora_publishing_request_is_denied_with_the_reason(self):
        lora = make_lora(self.team, self.editor, "ink wash")
        case = lora_publish_request(lora=lora, user=self.editor)
        self.act(case, "deny", reason_code="other", note="Needs a description.")
        case.refresh_from_db()
        self.assertEqual(case.resolution, Resolution.DENIED)
        self.assertFalse(Lora.objects.get(pk=lora.pk).is_public)
        notice = Notification.objects.get(user=self.editor)
        self.assertIn("did not publish your LoRA “ink wash”", notice.message)
        self.assertIn("Needs a description.", notice.message)
        self.assertEqual(notice.url, reverse("lora_detail", args=[lora.pk]))
