"""A secret link shows the picture only unless the image's editors choose that it shows
the prompt and parameters too: its page, its file and its download agree."""

import io

from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from gallery.models import Image, ModerationStatus, Visibility
from tests.base import StudioTestCase, make_image, make_job

PROMPT = "a lighthouse at dusk, secret sauce"
INFOTEXT = f"{PROMPT}\nSteps: 4, Sampler: Euler a, CFG scale: 7.0, Seed: 42"
HTMX = {"HX-Request": "true"}


def png_with_parameters():
    info = PngInfo()
    info.add_text("parameters", INFOTEXT)
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (200, 80, 40)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def png_text(response):
    picture = PILImage.open(io.BytesIO(b"".join(response.streaming_content)
                                       if response.streaming else response.content))
    return picture.text


class ShareLinkRecipeTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        image = make_image(make_job(cls.project, cls.editor, cls.model, prompt=PROMPT))
        image.file.save("x.png", ContentFile(png_with_parameters()), save=False)
        image.parameters = INFOTEXT
        image.visibility = Visibility.UNLISTED
        image.share_token = "s" * 32
        image.save()
        cls.image = image
        cls.page = reverse("image_shared", args=[image.share_token])
        cls.file = reverse("image_shared_file", args=[image.share_token])
        cls.toggle = reverse("image_share_recipe", args=[image.pk])

    def assert_recipe_hidden(self):
        self.client.logout()
        response = self.client.get(self.page)
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "<title>Shared image", html=False)
        self.assertContains(response, "without its prompt and parameters")
        for secret in ("secret sauce", "Steps: 4", "CFG scale", "Euler a", "tiny-sd15"):
            with self.subTest(secret=secret):
                self.assertNotContains(response, secret)
        for url in (self.file, self.file + "?download=1"):
            with self.subTest(url=url):
                self.assertEqual(png_text(self.client.get(url)), {})

    def assert_recipe_shown(self):
        self.client.logout()
        response = self.client.get(self.page)
        self.assertContains(response, "secret sauce")
        self.assertContains(response, "Steps: 4")
        self.assertEqual(png_text(self.client.get(self.file + "?download=1")),
                         {"parameters": INFOTEXT})

    def test_a_link_shows_the_picture_only_unless_its_editors_choose(self):
        self.assert_recipe_hidden()
        self.client.force_login(self.editor)
        response = self.client.post(self.toggle, {"share_recipe": "on"}, headers=HTMX)
        self.assertContains(response, 'name="share_recipe" checked')
        self.assert_recipe_shown()
        self.client.force_login(self.editor)
        self.client.post(self.toggle, {}, headers=HTMX)
        self.assertFalse(Image.objects.get(pk=self.image.pk).share_recipe)
        self.assert_recipe_hidden()

    def test_only_the_projects_editors_choose(self):
        cases = {"viewer": 403, "outsider": 404}
        for name, status in cases.items():
            self.client.force_login(self.users_by_role()[name])
            with self.subTest(user=name):
                response = self.client.post(self.toggle, {"share_recipe": "on"})
                self.assertEqual(response.status_code, status)
        self.client.logout()
        response = self.client.post(self.toggle, {"share_recipe": "on"})
        self.assertEqual(response.status_code, 302)
        self.client.force_login(self.editor)
        self.assertEqual(self.client.get(self.toggle).status_code, 405)
        self.assertFalse(Image.objects.get(pk=self.image.pk).share_recipe)
        self.assert_recipe_hidden()

    def test_the_image_page_offers_the_choice_to_editors_and_says_it_to_members(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, f'action="{self.toggle}"')
        self.client.force_login(self.viewer)
        response = self.client.get(self.image.get_absolute_url())
        self.assertNotContains(response, f'action="{self.toggle}"')
        self.assertContains(response, "The link shows the picture only")

    def test_a_public_images_link_shows_what_its_page_shows(self):
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        self.assert_recipe_shown()
