"""Explore: every team's public, moderation-passed images, for everyone (signed out too),
newest or most liked first, with filters and infinite scroll. A query, not a copy: an
image (or project) that stops being public leaves at once."""

import re
from datetime import timedelta
from unittest import mock

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gallery.browse import PAGE_SIZE, decode_liked_cursor, encode_liked_cursor
from gallery.models import Favourite, Image, Like, ModerationStatus, ReviewStatus, Visibility
from gallery.thumbnails import image_thumbnails_make
from generation.loras.models import JobLora
from generation.models import DiffusionModel, JobMode
from studio.accounts.models import Project, User
from tests.base import StudioTestCase, make_image, make_job

HTMX = {"HTTP_HX_REQUEST": "true"}
URL = reverse("explore")


def ids_in(response):
    return [int(pk) for pk in re.findall(r'data-image-id="(\d+)"', response.content.decode())]


def publish(*images):
    Image.objects.filter(pk__in=[image.pk for image in images]).update(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )


class ExploreTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.other_model = DiffusionModel.objects.create(name="tiny-two", source="/models/two")
        now = timezone.now()
        cls.fox = make_image(make_job(cls.project, cls.editor, cls.model, prompt="a red fox"))
        cls.owl = make_image(make_job(cls.project, cls.owner, cls.other_model,
                                      prompt="an owl at night", mode=JobMode.IMG2IMG))
        cls.hers = make_image(make_job(cls.other_project, cls.outsider, cls.model,
                                       prompt="a fox in snow"))
        cls.private = make_image(make_job(cls.project, cls.editor, cls.model, prompt="a fox"))
        for days, image in ((3, cls.fox), (2, cls.owl), (1, cls.hers), (0, cls.private)):
            Image.objects.filter(pk=image.pk).update(created_at=now - timedelta(days=days))
        publish(cls.fox, cls.owl, cls.hers)
        for image in (cls.fox, cls.owl, cls.hers, cls.private):
            image.refresh_from_db()
        JobLora.objects.create(job=cls.owl.job, name="inkwash", sha256="a" * 64, weight=0.8,
                               position=0)

    def get(self, params=None, user=None, **headers):
        if user is not None:
            self.client.force_login(user)
        return self.client.get(URL, params or {}, **headers)


class ExploreScopeTestCase(ExploreTestCase):
    def test_anonymous_visitors_see_public_images_newest_first(self):
        response = self.get()
        self.assertEqual(response.status_code, 200)
        self.assertEqual(ids_in(response), [self.hers.pk, self.owl.pk, self.fox.pk])
        self.assertContains(response, "3 public images")
        self.assertTemplateUsed(response, "gallery/explore.html")

    def test_members_see_the_same_public_images_only(self):
        for user in (self.viewer, self.outsider, self.owner):
            with self.subTest(user=user.username):
                self.assertEqual(ids_in(self.get(user=user)),
                                 [self.hers.pk, self.owl.pk, self.fox.pk])

    def test_only_public_and_passed(self):
        for visibility, status in [
            (Visibility.PROJECT, ModerationStatus.PASSED),
            (Visibility.TEAM, ModerationStatus.PASSED),
            (Visibility.UNLISTED, ModerationStatus.PASSED),
            (Visibility.PUBLIC, ModerationStatus.PENDING),
            (Visibility.PUBLIC, ModerationStatus.FAILED),
        ]:
            with self.subTest(visibility=visibility, status=status):
                Image.objects.filter(pk=self.private.pk).update(
                    visibility=visibility, moderation_status=status
                )
                self.assertNotIn(self.private.pk, ids_in(self.get()))

    def test_made_private_leaves_at_once(self):
        self.client.force_login(self.editor)
        self.client.post(reverse("image_visibility", args=[self.fox.pk]), {"visibility": "team"})
        self.assertEqual(ids_in(self.get()), [self.hers.pk, self.owl.pk])

    def test_a_failed_scan_takes_it_off(self):
        Image.objects.filter(pk=self.owl.pk).update(moderation_status=ModerationStatus.FAILED)
        self.assertEqual(ids_in(self.get()), [self.hers.pk, self.fox.pk])

    def test_a_project_made_private_or_deleted_leaves_with_all_its_images(self):
        Image.objects.filter(project=self.project).update(visibility=Visibility.PROJECT)
        self.assertEqual(ids_in(self.get()), [self.hers.pk])
        publish(self.fox)
        self.project.delete()
        self.assertEqual(ids_in(self.get()), [self.hers.pk])

    def test_deleted_images_leave(self):
        Image.objects.filter(pk=self.hers.pk).update(deleted_at=timezone.now())
        self.assertEqual(ids_in(self.get()), [self.owl.pk, self.fox.pk])

    def test_nav_link_for_everyone(self):
        self.assertContains(self.get(), f'href="{URL}"')
        self.client.force_login(self.viewer)
        self.assertContains(self.client.get(reverse("dashboard")), f'href="{URL}"')

    def test_cards_show_likes_and_remixes(self):
        Like.objects.create(user=self.viewer, image=self.fox)
        Like.objects.create(user=self.outsider, image=self.fox)
        # Two images made from the fox (its remixes), one of them private: both count.
        for project in (self.project, self.other_project):
            make_image(make_job(project, self.editor, self.model, source_image=self.fox,
                                mode=JobMode.IMG2IMG))
        html = self.get(user=self.viewer).content.decode()
        card = html[html.index(f'data-image-id="{self.fox.pk}"'):]
        card = card[: card.index("</figure>")]
        self.assertIn('<span class="reaction-count">2</span>', card)
        self.assertIn('aria-pressed="true"', card)
        self.assertIn('title="2 images made from it"', card)
        # Signed out: the count, and a way to log in instead of a button.
        self.client.logout()
        html = self.get().content.decode()
        card = html[html.index(f'data-image-id="{self.fox.pk}"'):]
        self.assertIn("Log in to like it", card[: card.index("</figure>")])

    def test_thumbnails_not_originals(self):
        image_thumbnails_make(image_id=self.fox.pk)
        response = self.get()
        thumbnail = reverse("image_thumbnail", args=[self.fox.pk, 256])
        self.assertContains(response, f'src="{thumbnail}"')

    def test_public_thumbnails_open_for_anonymous_visitors(self):
        image_thumbnails_make(image_id=self.fox.pk)
        response = self.client.get(reverse("image_thumbnail", args=[self.fox.pk, 256]))
        self.assertEqual(response.status_code, 200)

    def test_review_state_is_not_offered_to_the_public(self):
        self.assertNotIn("review", self.get().context["form"].fields)

    def test_team_review_badges_stay_inside_the_team(self):
        Image.objects.filter(pk=self.fox.pk).update(review_status=ReviewStatus.REJECTED)
        for user in (None, self.outsider, self.editor):
            with self.subTest(user=user):
                self.client.logout()
                self.assertNotContains(self.get(user=user), "Rejected")
        self.client.force_login(self.editor)
        gallery = self.client.get(reverse("project_gallery", args=[self.project.pk]))
        self.assertContains(gallery, "Rejected")

    def test_empty(self):
        Image.objects.update(visibility=Visibility.PROJECT)
        self.assertContains(self.get(), "Nothing public yet")


class ExploreFilterTestCase(ExploreTestCase):
    def test_prompt_search(self):
        response = self.get({"q": "FOX"})
        self.assertEqual(ids_in(response), [self.hers.pk, self.fox.pk])
        self.assertContains(response, "2 public images match the filters")

    def test_model(self):
        self.assertEqual(ids_in(self.get({"model": self.other_model.pk})), [self.owl.pk])

    def test_lora(self):
        response = self.get({"lora": "inkwash"})
        self.assertEqual(ids_in(response), [self.owl.pk])
        self.assertEqual(list(response.context["form"].fields["lora"].choices),
                         [("", "Any LoRA"), ("inkwash", "inkwash")])

    def test_mode(self):
        self.assertEqual(ids_in(self.get({"mode": "img2img"})), [self.owl.pk])

    def test_date_range(self):
        day = self.owl.created_at.date()
        params = {"date_from": day.isoformat(), "date_to": day.isoformat()}
        self.assertEqual(ids_in(self.get(params)), [self.owl.pk])

    def test_choices_are_only_what_is_public(self):
        private_model = DiffusionModel.objects.create(name="secret", source="/models/secret")
        job = make_job(self.project, self.editor, private_model)
        make_image(job)
        JobLora.objects.create(job=job, name="secret-lora", sha256="b" * 64, weight=1,
                               position=0)
        form = self.get().context["form"]
        self.assertEqual(set(form.fields["model"].queryset), {self.model, self.other_model})
        self.assertNotIn("secret-lora", dict(form.fields["lora"].choices))
        # Asking for it anyway: an error on that field, the rest applies.
        response = self.get({"lora": "secret-lora", "model": private_model.pk, "q": "fox"})
        self.assertEqual(ids_in(response), [self.hers.pk, self.fox.pk])
        self.assertContains(response, "This filter is not applied")

    def test_bad_input(self):
        response = self.get({"date_from": "2030-01-02", "date_to": "2030-01-01"})
        self.assertContains(response, "The end date is before the start date.")
        response = self.get({"sort": "cheapest", "cursor": "nonsense"})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Sort: Select a valid choice")
        self.assertEqual(ids_in(response), [self.hers.pk, self.owl.pk, self.fox.pk])

    def test_htmx_gets_the_results_fragment(self):
        response = self.get({"q": "owl"}, **HTMX)
        self.assertNotContains(response, "<html")
        self.assertContains(response, 'id="gallery-results"')
        self.assertEqual(ids_in(response), [self.owl.pk])
        self.assertIn("HX-Request", response["Vary"])


class ExploreSortTestCase(ExploreTestCase):
    def test_most_liked_first_newest_first_among_equals(self):
        others = [User.objects.create_user(f"fan{n}") for n in range(3)]
        for user in others:
            Like.objects.create(user=user, image=self.fox)
        Like.objects.create(user=others[0], image=self.owl)
        Like.objects.create(user=others[0], image=self.hers)
        response = self.get({"sort": "liked"})
        self.assertEqual(ids_in(response), [self.fox.pk, self.hers.pk, self.owl.pk])
        self.assertContains(response, "most liked first")

    def test_most_liked_cursor_round_trip(self):
        image = self.fox
        image.like_count = 7
        cursor = encode_liked_cursor(image)
        self.assertEqual(decode_liked_cursor(cursor), (7, image.created_at, image.pk))
        for bad in ("", "x.1.2", "7.nonsense", "-1.5.3", "9" * 30 + ".1.1"):
            self.assertIsNone(decode_liked_cursor(bad))


class ExplorePagingTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        job = make_job(cls.project, cls.editor, cls.model)
        base = timezone.now()
        cls.images = [make_image(job) for _ in range(PAGE_SIZE + 7)]
        publish(*cls.images)
        fans = [User.objects.create_user(f"fan{n}") for n in range(2)]
        for n, image in enumerate(cls.images):
            # Pairs share a time and thirds share a like count: ties everywhere.
            Image.objects.filter(pk=image.pk).update(
                created_at=base - timedelta(seconds=n // 2 * 2)
            )
            for fan in fans[: n % 3]:
                Like.objects.create(user=fan, image=image)

    def scroll(self, params):
        first = self.client.get(URL, params)
        seen = ids_in(first)
        self.assertEqual(len(seen), PAGE_SIZE)
        cursor = first.context["page"].next_cursor
        second = self.client.get(URL, {**params, "cursor": cursor}, **HTMX)
        self.assertNotContains(second, 'id="gallery-results"')
        self.assertNotContains(second, "data-gallery-more")
        return seen + ids_in(second)

    def test_newest_pages_follow_each_other(self):
        seen = self.scroll({})
        expected = Image.objects.order_by("-created_at", "-pk").values_list("pk", flat=True)
        self.assertEqual(seen, list(expected))

    def test_most_liked_pages_follow_each_other_through_ties(self):
        seen = self.scroll({"sort": "liked"})
        self.assertEqual(len(seen), len(set(seen)))
        likes = {image.pk: image.likes.count() for image in Image.objects.all()}
        expected = sorted(
            Image.objects.all(), key=lambda i: (-likes[i.pk], -i.created_at.timestamp(), -i.pk)
        )
        self.assertEqual(seen, [image.pk for image in expected])

    def test_the_next_page_keeps_filters_and_order(self):
        response = self.client.get(URL, {"q": "lighthouse", "sort": "liked"})
        self.assertContains(response, "q=lighthouse&amp;sort=liked&amp;cursor=")

    def test_a_cursor_of_the_other_order_starts_at_the_top(self):
        newest = self.client.get(URL).context["page"].next_cursor
        response = self.client.get(URL, {"sort": "liked", "cursor": newest}, **HTMX)
        self.assertContains(response, 'id="gallery-results"')
        self.assertEqual(len(ids_in(response)), PAGE_SIZE)


class ExploreQueryCountTestCase(StudioTestCase):
    """A page of Explore costs the same queries for 10 public images as for 100."""

    def fill(self, count):
        Image.objects.all().delete()
        second = Project.objects.create(team=self.other_team, name=f"More {count}")
        images = []
        for n in range(count):
            project = self.project if n % 2 else second
            job = make_job(project, self.editor, self.model, prompt=f"fox {n}",
                           source_image=images[-1] if n % 5 == 1 else None)
            images.append(make_image(job))
            JobLora.objects.create(job=job, name=f"lora{n % 3}", sha256="c" * 64, weight=1,
                                   position=0)
            if n % 4 == 0:
                image_thumbnails_make(image_id=images[-1].pk)
            if n % 3 == 0:
                Like.objects.create(user=self.viewer, image=images[-1])
                Favourite.objects.create(user=self.viewer, image=images[-1])
        publish(*images)

    def count(self, params, headers=None):
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(URL, params, **(headers or {}))
        self.assertEqual(response.status_code, 200)
        return len(queries), response

    @mock.patch("gallery.browse.PAGE_SIZE", 2)  # so that 10 images make two pages too
    def test_constant_in_the_number_of_images(self):
        pages = [
            {},
            {"sort": "liked"},
            {"q": "fox", "model": self.model.pk, "mode": "txt2img", "lora": "lora1",
             "date_from": "2000-01-01", "sort": "liked"},
        ]
        counts = {}
        for size in (10, 100):
            self.fill(size)
            for user in (None, self.viewer):
                self.client.logout()
                if user:
                    self.client.force_login(user)
                for n, params in enumerate(pages + ([{"favourites": "on"}] if user else [])):
                    key = f"{user}-{n}"
                    queries, response = self.count(params)
                    counts.setdefault(key, []).append(queries)
                    cursor = response.context["page"].next_cursor
                    self.assertTrue(cursor)
                    queries, _ = self.count({**params, "cursor": cursor}, HTMX)
                    counts.setdefault(f"{key}-next", []).append(queries)
        for page, (small, large) in counts.items():
            with self.subTest(page=page):
                self.assertEqual(small, large)
