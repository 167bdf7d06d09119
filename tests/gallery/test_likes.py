"""Likes and favourites: one per user per image, toggled with HTMX from a grid card, the
lightbox or the image page, only on images the user may see (others 404, anonymous to
log in); counts on cards cost no query per image."""

import re

from django.urls import reverse

from gallery.models import Favourite, Image, Like, ModerationStatus, Visibility
from tests.base import StudioTestCase, make_image, make_job

HTMX = {"HTTP_HX_REQUEST": "true"}
MEMBERS = ("owner", "admin", "editor", "viewer")


class ReactionTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.image = make_image(make_job(cls.project, cls.editor, cls.model))

    def like(self, user, on="1", image=None, url="image_like", **headers):
        self.client.force_login(user)
        return self.client.post(reverse(url, args=[(image or self.image).pk]), {"on": on},
                                **headers)


class LikeTestCase(ReactionTestCase):
    def test_members_like_and_unlike(self):
        for role in MEMBERS:
            with self.subTest(role=role):
                user = self.users_by_role()[role]
                response = self.like(user, **HTMX)
                self.assertEqual(response.status_code, 200)
                self.assertTrue(Like.objects.filter(user=user, image=self.image).exists())
                self.assertContains(response, 'aria-pressed="true"')
                self.assertContains(response, 'value="0"')  # the next press takes it back
        self.assertEqual(self.image.likes.count(), 4)
        response = self.like(self.viewer, on="0", **HTMX)
        self.assertContains(response, 'aria-pressed="false"')
        self.assertContains(response, '<span class="reaction-count">3</span>', html=False)
        self.assertFalse(Like.objects.filter(user=self.viewer).exists())

    def test_one_like_per_user_however_often_pressed(self):
        for _ in range(3):
            self.like(self.editor, **HTMX)
        self.assertEqual(Like.objects.filter(image=self.image).count(), 1)
        for _ in range(2):
            self.like(self.editor, on="0", **HTMX)
        self.assertEqual(Like.objects.count(), 0)

    def test_without_htmx_back_to_the_image(self):
        response = self.like(self.editor)
        self.assertRedirects(response, self.image.get_absolute_url())

    def test_others_get_404_and_anonymous_users_log_in(self):
        response = self.like(self.outsider, **HTMX)
        self.assertEqual(response.status_code, 404)
        self.client.logout()
        url = reverse("image_like", args=[self.image.pk])
        response = self.client.post(url, {"on": "1"})
        self.assertRedirects(
            response, f"{reverse('login')}?next={url}", fetch_redirect_response=False
        )
        missing = reverse("image_like", args=[self.image.pk + 1000])
        self.client.force_login(self.editor)
        self.assertEqual(self.client.post(missing, {"on": "1"}).status_code, 404)
        self.assertEqual(Like.objects.count(), 0)

    def test_get_is_not_allowed(self):
        self.client.force_login(self.editor)
        self.assertEqual(self.client.get(reverse("image_like", args=[self.image.pk])).status_code,
                         405)

    def test_visibility_decides(self):
        # Team-visible and public images: their viewers may like them; link-only: not.
        for visibility, status, outsider_may in [
            (Visibility.TEAM, ModerationStatus.PENDING, False),
            (Visibility.UNLISTED, ModerationStatus.PENDING, False),
            (Visibility.PUBLIC, ModerationStatus.FAILED, False),
            (Visibility.PUBLIC, ModerationStatus.PASSED, True),
        ]:
            with self.subTest(visibility=visibility, status=status):
                Image.objects.filter(pk=self.image.pk).update(
                    visibility=visibility, moderation_status=status
                )
                response = self.like(self.outsider, **HTMX)
                self.assertEqual(response.status_code, 200 if outsider_may else 404)
                self.assertEqual(
                    Like.objects.filter(user=self.outsider).exists(), outsider_may
                )

    def test_a_deleted_image_can_not_be_liked(self):
        from django.utils import timezone

        Image.objects.filter(pk=self.image.pk).update(deleted_at=timezone.now())
        self.assertEqual(self.like(self.editor, **HTMX).status_code, 404)

    def test_bad_on_value_means_take_it_back(self):
        self.like(self.editor, **HTMX)
        response = self.like(self.editor, on="yes please", **HTMX)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(Like.objects.count(), 0)


class FavouriteTestCase(ReactionTestCase):
    def test_favourites_are_private_bookmarks(self):
        response = self.like(self.viewer, url="image_favourite", **HTMX)
        self.assertContains(response, 'aria-pressed="true"')
        self.assertContains(response, "Favourite")
        self.assertTrue(Favourite.objects.filter(user=self.viewer, image=self.image).exists())
        self.like(self.viewer, url="image_favourite", **HTMX)
        self.assertEqual(Favourite.objects.count(), 1)
        self.like(self.viewer, on="0", url="image_favourite", **HTMX)
        self.assertEqual(Favourite.objects.count(), 0)
        self.assertEqual(Like.objects.count(), 0)  # a favourite is not a like

    def test_favourite_by_others_404(self):
        response = self.like(self.outsider, url="image_favourite", **HTMX)
        self.assertEqual(response.status_code, 404)
        self.assertEqual(Favourite.objects.count(), 0)


class ButtonsTestCase(ReactionTestCase):
    def test_grid_cards_show_counts_and_my_state(self):
        other = make_image(make_job(self.project, self.editor, self.model))
        Like.objects.create(user=self.owner, image=self.image)
        Like.objects.create(user=self.viewer, image=self.image)
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        html = response.content.decode()
        card = html[html.index(f'data-image-id="{self.image.pk}"'):]
        card = card[: card.index("</figure>")]
        self.assertIn('aria-pressed="true"', card)
        self.assertIn('<span class="reaction-count">2</span>', card)
        card = html[html.index(f'data-image-id="{other.pk}"'):]
        card = card[: card.index("</figure>")]
        self.assertIn('aria-pressed="false"', card)
        self.assertIn('<span class="reaction-count">0</span>', card)

    def test_the_image_page_has_like_and_favourite(self):
        Like.objects.create(user=self.owner, image=self.image)
        self.client.force_login(self.viewer)
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, f'hx-post="{reverse("image_like", args=[self.image.pk])}"')
        self.assertContains(
            response, f'hx-post="{reverse("image_favourite", args=[self.image.pk])}"'
        )
        self.assertContains(response, '<span class="reaction-count">1</span>', html=False)

    def test_the_lightbox_has_a_place_for_the_like_button(self):
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        self.assertContains(response, "data-lightbox-reactions")
        self.assertContains(response, "js/collections.js")

    def test_anonymous_visitors_of_a_public_image_see_the_count_and_a_way_to_log_in(self):
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        Like.objects.create(user=self.owner, image=self.image)
        response = self.client.get(self.image.get_absolute_url())
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, reverse("image_like", args=[self.image.pk]))
        self.assertTrue(re.search(r'href="/login/\?next=[^"]+"[^>]*title="Log in to like it"',
                                  response.content.decode()))


class FavouritesFilterTestCase(ReactionTestCase):
    """The grids' and Explore's "Favourites" filter: the user's own favourites only."""

    def test_grids(self):
        other = make_image(make_job(self.project, self.editor, self.model))
        Favourite.objects.create(user=self.viewer, image=self.image)
        Favourite.objects.create(user=self.owner, image=other)
        self.client.force_login(self.viewer)
        for url in (reverse("project_gallery", args=[self.project.pk]),
                    reverse("team_gallery", args=[self.team.pk])):
            with self.subTest(url=url):
                response = self.client.get(url, {"favourites": "on"})
                self.assertEqual(ids_in(response), [self.image.pk])
                self.assertContains(response, "1 image matches the filters")
                self.assertContains(response, 'name="favourites"')
        self.client.force_login(self.editor)  # the editor made both, liked neither
        response = self.client.get(reverse("my_images"), {"favourites": "on"})
        self.assertContains(response, "No images match")

    def test_explore(self):
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        other = make_image(make_job(self.project, self.editor, self.model))
        Image.objects.filter(pk=other.pk).update(
            visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
        )
        Favourite.objects.create(user=self.outsider, image=other)
        self.client.force_login(self.outsider)
        self.assertEqual(ids_in(self.client.get(reverse("explore"), {"favourites": "on"})),
                         [other.pk])
        self.client.logout()  # signed out: no such filter, and it is not applied
        response = self.client.get(reverse("explore"), {"favourites": "on"})
        self.assertNotIn("favourites", response.context["form"].fields)
        self.assertEqual(len(ids_in(response)), 2)


def ids_in(response):
    return [int(pk) for pk in re.findall(r'data-image-id="(\d+)"', response.content.decode())]


class SharedByLinkTestCase(ReactionTestCase):
    def test_a_link_visitor_sees_the_count_but_no_buttons(self):
        Image.objects.filter(pk=self.image.pk).update(
            visibility=Visibility.UNLISTED, share_token="s" * 32
        )
        Like.objects.create(user=self.owner, image=self.image)
        for who in (self.outsider, None):
            with self.subTest(who=who):
                self.client.logout()
                if who:
                    self.client.force_login(who)
                response = self.client.get(reverse("image_shared", args=["s" * 32]))
                self.assertContains(response, '<span class="reaction-count">1</span>')
                self.assertNotContains(response, reverse("image_like", args=[self.image.pk]))
                self.assertNotContains(response, "Log in to like it")
                self.assertNotContains(response, "Add to collection")
