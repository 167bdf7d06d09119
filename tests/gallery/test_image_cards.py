"""The grids' image cards, rendered in Python (gallery/templatetags/image_cards.py): what
each card shows, escaped, and a grid renders no template per card (issue #19)."""

from django.contrib.auth.models import AnonymousUser
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse, set_script_prefix

from gallery.models import Image, ModerationStatus, ReviewStatus, Visibility
from tests.base import StudioTestCase, make_image, make_job


def render(source, **context):
    return Template("{% load image_cards %}" + source).render(Context(context))


class ImageCardTests(StudioTestCase):
    def setUp(self):
        self.image = make_image(make_job(
            self.project, self.editor, self.model, prompt='a <b>fox</b> & "owl"', seed=77
        ))

    def test_a_card_links_its_page_file_and_thumbnails(self):
        self.image.thumbnails = {"256": "t/a-256.webp", "512": "t/a-512.webp"}
        html = render("{% image_card image %}", image=self.image)
        pk = self.image.pk
        self.assertIn(f'href="{reverse("image_detail", args=[pk])}"', html)
        self.assertIn(f'data-full="{reverse("image_file", args=[pk])}"', html)
        small, large = (reverse("image_thumbnail", args=[pk, size]) for size in (256, 512))
        self.assertIn(f'<img src="{small}" srcset="{small} 256w, {large} 512w"', html)

    def test_without_thumbnails_the_card_shows_the_original(self):
        self.image.thumbnails = {}
        html = render("{% image_card image %}", image=self.image)
        self.assertIn(f'<img src="{reverse("image_file", args=[self.image.pk])}" alt=', html)
        self.assertNotIn("srcset", html)

    def test_the_prompt_is_escaped(self):
        html = render("{% image_card image %}", image=self.image)
        self.assertIn("a &lt;b&gt;fox&lt;/b&gt; &amp; &quot;owl&quot;", html)
        self.assertNotIn("<b>fox", html)

    def test_badges_follow_review_moderation_and_visibility(self):
        self.image.review_status = ReviewStatus.APPROVED
        self.image.moderation_status = ModerationStatus.FAILED
        self.image.visibility = Visibility.UNLISTED
        html = render("{% image_card image show_review=True %}", image=self.image)
        self.assertIn('<span class="badge thumb-review badge-success">Approved</span>', html)
        self.assertIn("Held by moderation", html)
        self.assertIn('class="thumb is-flagged"', html)
        self.assertIn('<span class="thumb-badge">Link</span>', html)
        # Review badges and the seed are for the team's members only.
        plain = render("{% image_card image %}", image=self.image)
        self.assertNotIn("thumb-review", plain)
        self.assertNotIn("data-seed", plain)

    def test_the_like_button_of_a_member_and_of_an_anonymous_viewer(self):
        self.image.like_count, self.image.liked = 3, True
        html = render("{% image_card image %}", image=self.image, reactions=True,
                      user=self.editor, csrf_token="t0ken")
        self.assertIn(f'action="{reverse("image_like", args=[self.image.pk])}"', html)
        self.assertIn('value="t0ken"', html)
        self.assertIn('aria-pressed="true"', html)
        self.assertIn('<span class="reaction-count">3</span>', html)
        request = RequestFactory().get("/explore/?sort=liked")
        anonymous = render("{% image_card image %}", image=self.image, reactions=True,
                           user=AnonymousUser(), request=request)
        self.assertIn(f'href="{reverse("login")}?next=/explore/%3Fsort%3Dliked"', anonymous)
        self.assertNotIn("<form", anonymous)

    def test_urls_follow_the_script_prefix(self):
        set_script_prefix("/studio/")
        try:
            html = render("{% image_card image %}", image=self.image)
        finally:
            set_script_prefix("/")
        self.assertIn(f'href="/studio/images/{self.image.pk}/"', html)

    def test_a_grid_renders_no_template_per_card(self):
        for seed in range(12):
            make_image(make_job(self.project, self.editor, self.model, seed=seed))
        self.client.force_login(self.editor)
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        self.assertEqual(len(response.context["images"]), Image.objects.count())
        self.assertContains(response, '<figure class="thumb', count=Image.objects.count())
        # No template (nor partial) of the card's is rendered, once or per card.
        card_templates = [
            template.name for template in response.templates
            if template.name.startswith(("gallery/image_detail.html", "gallery/reactions.html"))
        ]
        self.assertEqual(card_templates, [])
