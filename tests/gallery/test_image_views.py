import io

from django.urls import reverse
from PIL import Image as PILImage

from tests.base import StudioTestCase, make_image, make_job


class ImageViewsTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model))

    def test_member_gets_the_png(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_file", args=[self.image.pk]))
        self.assertEqual(response["Content-Type"], "image/png")
        self.assertIn("private", response["Cache-Control"])
        png = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
        self.assertEqual(png.size, (64, 64))

    def test_download_is_an_attachment(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_file", args=[self.image.pk]), {"download": 1})
        self.assertIn("attachment", response["Content-Disposition"])

    def test_outsider_gets_404_for_file_detail_and_card(self):
        self.client.force_login(self.outsider)
        for name in ("image_file", "image_detail", "image_card"):
            with self.subTest(name=name):
                response = self.client.get(reverse(name, args=[self.image.pk]))
                self.assertEqual(response.status_code, 404)

    def test_a_public_cards_review_badge_is_for_its_team_only(self):
        from gallery.models import Image, ModerationStatus, ReviewStatus, Visibility

        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED,
            review_status=ReviewStatus.REJECTED,
        )
        url = reverse("image_card", args=[self.image.pk])
        self.client.force_login(self.outsider)
        self.assertNotContains(self.client.get(url), "Rejected")
        self.client.force_login(self.viewer)
        self.assertContains(self.client.get(url), "Rejected")

    def test_the_stored_file_name_is_not_guessable(self):
        name = self.image.file.name
        self.assertRegex(name, rf"^images/{self.project.pk}/[0-9a-f]{{32}}\.png$")

    def test_detail_shows_the_parameters(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_detail", args=[self.image.pk]))
        self.assertContains(response, "Steps: 4")
        self.assertContains(response, "42")

    def test_card_is_a_fragment(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_card", args=[self.image.pk]))
        self.assertContains(response, 'class="thumb is-new"')
        self.assertNotContains(response, "<html")
