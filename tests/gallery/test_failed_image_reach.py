"""An image that failed moderation (flagged, or removed by a moderator) reaches no one but
its project through collections and remix either: a public collection's page, link and
cover leave it out for visitors, nobody else adds it to a collection, and the remix view,
the studio's remix prefill and a job's remix_of refuse it."""

import re
from unittest import mock

from django.urls import reverse

from gallery.collections.models import Collection, CollectionItem, CollectionVisibility
from gallery.models import Image, ModerationStatus, Visibility
from gallery.thumbnails import image_thumbnails_make
from generation.models import GenerationJob
from studio.moderation.models import Case, CaseKind, Moderator
from studio.moderation.removals import case_remove
from tests.base import StudioTestCase, make_image, make_job


def ids_in(response):
    return [int(pk) for pk in re.findall(r'data-image-id="(\d+)"', response.content.decode())]


class FailedImageTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.fine, cls.flagged = (
            make_image(make_job(cls.project, cls.editor, cls.model, prompt=prompt))
            for prompt in ("a calm lake", "a flagged picture")
        )
        Image.objects.filter(pk=cls.fine.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        # Public as its project chose, but its scan flagged it: held until a moderator decides.
        Image.objects.filter(pk=cls.flagged.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.FAILED
        )
        image_thumbnails_make(image_id=cls.flagged.pk)
        cls.board = Collection.objects.create(
            team=cls.team, project=cls.project, name="Lakes", created_by=cls.editor,
            visibility=CollectionVisibility.PUBLIC, share_token="s" * 32, cover=cls.flagged,
        )
        for position, image in enumerate((cls.flagged, cls.fine)):
            CollectionItem.objects.create(collection=cls.board, image=image, position=position)

    def login(self, user):
        self.client.logout()
        if user is not None:
            self.client.force_login(user)


class CollectionTests(FailedImageTestCase):
    def test_visitors_never_see_it_on_the_page_the_link_or_the_cover(self):
        for user in (None, self.outsider):
            self.login(user)
            for url in (self.board.get_absolute_url(), self.board.share_url()):
                with self.subTest(url=url, user=user):
                    response = self.client.get(url)
                    self.assertEqual(ids_in(response), [self.fine.pk])
                    self.assertContains(response, "1 image")
                    self.assertNotContains(response, f"/images/{self.flagged.pk}/")
                    self.assertNotContains(response, self.flagged.prompt)

    def test_its_project_still_sees_it(self):
        self.login(self.viewer)
        response = self.client.get(self.board.get_absolute_url())
        self.assertEqual(ids_in(response), [self.flagged.pk, self.fine.pk])
        self.assertContains(response, "see 1 of these images")

    def test_nobody_else_adds_it_to_a_collection(self):
        hers = Collection.objects.create(team=self.other_team, name="Mine",
                                         created_by=self.outsider)
        self.login(self.outsider)
        response = self.client.post(reverse("collection_add"), {
            "collection": hers.pk, "image": [self.flagged.pk],
        }, HTTP_HX_REQUEST="true")
        self.assertEqual(response.status_code, 422)
        self.assertFalse(hers.items.exists())

    def test_a_removed_image_leaves_the_public_collection(self):
        Image.objects.filter(pk=self.flagged.pk).update(moderation_status=ModerationStatus.PASSED)
        moderator = Moderator.objects.create(user=self.admin, team=None).user
        case = Case.objects.create(kind=CaseKind.REPORT, subject_image_id=self.flagged.pk,
                                   team=self.team, subject_user=self.editor)
        self.login(None)
        self.assertEqual(ids_in(self.client.get(self.board.get_absolute_url())),
                         [self.flagged.pk, self.fine.pk])
        with mock.patch("studio.moderation.scanning.publish"):
            case_remove(case=case, moderator=moderator, reason_code="tos")
        self.assertEqual(ids_in(self.client.get(self.board.get_absolute_url())), [self.fine.pk])


class RemixTests(FailedImageTestCase):
    def test_the_remix_view_and_the_studio_prefill_refuse_it_to_others(self):
        self.login(self.outsider)
        self.assertEqual(
            self.client.get(reverse("image_remix", args=[self.flagged.pk])).status_code, 404
        )
        studio = reverse("project_studio", args=[self.other_project.pk])
        self.assertEqual(self.client.get(studio, {"remix": self.flagged.pk}).status_code, 404)
        # The passed one is remixable: the refusal is the moderation's.
        self.assertEqual(
            self.client.get(reverse("image_remix", args=[self.fine.pk])).status_code, 302
        )
        self.login(None)
        response = self.client.get(reverse("image_remix", args=[self.flagged.pk]))
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])

    def test_a_job_cant_record_it_as_what_it_remixes(self):
        self.login(self.outsider)
        data = {"prompt": "my take", "model": self.model.pk, "steps": 4,
                "guidance_scale": 7, "width": 64, "height": 64, "remix_of": self.flagged.pk}
        with mock.patch("generation.services.enqueue_generation"):
            response = self.client.post(reverse("job_create", args=[self.other_project.pk]), data)
        self.assertEqual(response.status_code, 422)
        self.assertIn("remix_of", response.context["form"].errors)
        self.assertFalse(GenerationJob.objects.filter(project=self.other_project).exists())

    def test_its_project_may_still_remix_it(self):
        self.login(self.editor)
        response = self.client.get(reverse("image_remix", args=[self.flagged.pk]))
        self.assertEqual(response.status_code, 302)
        self.assertIn(f"remix={self.flagged.pk}", response["Location"])
