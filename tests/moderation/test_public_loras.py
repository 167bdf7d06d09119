"""Public LoRAs: the owner (or a team admin) asks to publish a LoRA, which opens a case
only site moderators see; once a site moderator approves it in the queue, everyone may
browse it and signed-in users download it. Private, pending or disabled LoRAs are 404 on
the public pages; LoRAs of a person's likeness are never published."""

from django.urls import reverse

from generation.loras.models import Lora
from generation.models import JobStatus
from generation.training.subjects.models import SubjectConsent
from generation.training.subjects.services import consent_revoke
from studio.accounts.models import User
from studio.moderation.models import Case, CaseKind, CaseStatus, Moderator
from tests.base import StudioTestCase
from tests.lora_builders import make_lora
from tests.subject_builders import make_run, make_subject


class PublicLoraTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.lora = make_lora(cls.team, cls.editor, "ink wash", description="Loose washes")
        cls.site_moderator = User.objects.create_user("mod", "mod@example.org", cls.password)
        Moderator.objects.create(user=cls.site_moderator)
        cls.team_moderator = User.objects.create_user("tmod", "tmod@example.org", cls.password)
        Moderator.objects.create(user=cls.team_moderator, team=cls.team)

    def request_publishing(self, user=None):
        self.client.force_login(user or self.editor)
        return self.client.post(reverse("lora_publish", args=[self.lora.pk]),
                                {"note": "Made from our own paintings"}, follow=True)

    def approve(self, case):
        self.client.force_login(self.site_moderator)
        return self.client.post(reverse("moderation_case_act", args=[case.pk]),
                                {"action": "approve", "reason_code": "other"})

    def public_urls(self):
        return [reverse("public_lora_detail", args=[self.lora.pk]),
                reverse("public_lora_file", args=[self.lora.pk])]

    def test_request_then_approval_makes_it_public_to_everyone(self):
        for url in self.public_urls():
            self.client.force_login(self.outsider)
            self.assertEqual(self.client.get(url).status_code, 404)

        response = self.request_publishing()
        self.assertContains(response, "a site moderator will decide")
        self.assertContains(response, "Awaiting a moderator")
        case = Case.objects.get(kind=CaseKind.LORA_PUBLISH)
        self.assertEqual((case.subject_lora_id, case.team, case.subject_user),
                         (self.lora.pk, None, self.editor))
        self.assertIn("Made from our own paintings", case.summary)
        # Only site moderators see the request; they may preview the LoRA, others may not.
        self.client.force_login(self.site_moderator)
        self.assertContains(self.client.get(reverse("moderation_queue")), "ink wash")
        self.assertContains(self.client.get(self.public_urls()[0]), "Not public yet")
        self.client.force_login(self.team_moderator)
        self.assertNotContains(self.client.get(reverse("moderation_queue")), "ink wash")
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.public_urls()[0]).status_code, 404)

        self.approve(case)
        self.lora.refresh_from_db()
        self.assertTrue(self.lora.is_public)
        case.refresh_from_db()
        self.assertEqual(case.status, CaseStatus.RESOLVED)

        self.client.logout()
        listing = self.client.get(reverse("public_loras"))
        self.assertContains(listing, "ink wash")
        self.assertContains(self.client.get(self.public_urls()[0]), "Loose washes")
        self.assertEqual(self.client.get(self.public_urls()[1]).status_code, 302)  # log in
        self.client.force_login(self.outsider)
        download = self.client.get(self.public_urls()[1])
        self.assertEqual(b"".join(download.streaming_content), self.lora.file.open("rb").read())
        # The team's own pages, with its images, stay the team's.
        self.assertEqual(self.client.get(self.lora.get_absolute_url()).status_code, 404)

    def test_the_owner_makes_it_private_again(self):
        Lora.objects.filter(pk=self.lora.pk).update(is_public=True)
        self.client.force_login(self.editor)
        self.client.post(reverse("lora_unpublish", args=[self.lora.pk]))
        self.lora.refresh_from_db()
        self.assertFalse(self.lora.is_public)
        self.assertNotContains(self.client.get(reverse("public_loras")), self.public_urls()[0])

    def test_who_may_request_publishing(self):
        others = make_lora(self.team, self.owner, "others")
        self.client.force_login(self.editor)  # an editor, but not who added it
        self.assertEqual(
            self.client.post(reverse("lora_publish", args=[others.pk])).status_code, 403
        )
        self.client.force_login(self.admin)  # team admins may
        self.client.post(reverse("lora_publish", args=[others.pk]))
        self.assertTrue(Case.objects.filter(subject_lora_id=others.pk).exists())
        for user, status in [(self.viewer, 403), (self.outsider, 404)]:
            self.client.force_login(user)
            for name in ("lora_publish", "lora_unpublish"):
                with self.subTest(user=user.username, name=name):
                    response = self.client.post(reverse(name, args=[self.lora.pk]))
                    self.assertEqual(response.status_code, status)
        self.assertFalse(Case.objects.filter(subject_lora_id=self.lora.pk).exists())

    def test_a_second_request_while_one_is_pending_is_refused(self):
        self.request_publishing()
        response = self.request_publishing()
        self.assertContains(response, "already requested")
        self.assertEqual(Case.objects.filter(subject_lora_id=self.lora.pk).count(), 1)

    def test_a_persons_likeness_is_never_published_and_revoked_ones_disappear(self):
        person = make_subject(self.team, self.editor, name="Jo", token="jdoe",
                              depicts_person=True)
        SubjectConsent.objects.create(subject=person, given_by="Jo", given_on="2026-01-01",
                                      scope="All", recorded_by=self.editor)
        make_run(person, self.project, self.editor, self.model, status=JobStatus.FINISHED,
                 lora=self.lora)
        response = self.request_publishing()
        self.assertContains(response, "trained on Jo, a real person")
        self.assertFalse(Case.objects.exists())

        Lora.objects.filter(pk=self.lora.pk).update(is_public=True)  # published before
        consent_revoke(subject=person, user=self.editor)
        self.client.logout()
        self.assertNotContains(self.client.get(reverse("public_loras")), "ink wash")
        self.assertEqual(self.client.get(self.public_urls()[0]).status_code, 404)
