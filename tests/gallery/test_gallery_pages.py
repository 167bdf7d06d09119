"""Gallery pages: project, team and "My images" grids with filters and infinite scroll."""

import re
from datetime import timedelta
from unittest import mock

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from gallery.browse import PAGE_SIZE, decode_cursor, encode_cursor
from gallery.models import Image, Like
from gallery.thumbnails import image_thumbnails_make
from generation.models import DiffusionModel, JobMode
from studio.accounts.models import Membership, Project, User
from tests.base import StudioTestCase, make_image, make_job

HTMX = {"HTTP_HX_REQUEST": "true"}


def ids_in(response):
    """The images of a grid, in order (fragments carry no template context)."""
    return [int(pk) for pk in re.findall(r'data-image-id="(\d+)"', response.content.decode())]


class GalleryTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.second_project = Project.objects.create(team=cls.team, name="Covers")
        cls.other_model = DiffusionModel.objects.create(name="tiny-two", source="/models/two")
        now = timezone.now()
        cls.fox = make_image(make_job(cls.project, cls.editor, cls.model, prompt="a red fox"))
        cls.owl = make_image(
            make_job(cls.project, cls.owner, cls.other_model, prompt="an owl at night",
                     mode=JobMode.IMG2IMG)
        )
        cls.cover = make_image(
            make_job(cls.second_project, cls.editor, cls.model, prompt="a book cover, fox")
        )
        cls.hers = make_image(make_job(cls.other_project, cls.outsider, cls.model))
        # Known, distinct times: fox oldest, cover newest.
        for days, image in ((3, cls.fox), (2, cls.owl), (1, cls.cover), (1, cls.hers)):
            Image.objects.filter(pk=image.pk).update(created_at=now - timedelta(days=days))
        for image in (cls.fox, cls.owl, cls.cover, cls.hers):
            image.refresh_from_db()

    def get(self, name, *args, as_user=None, **params):
        self.client.force_login(as_user or self.viewer)
        headers = params.pop("headers", {})
        return self.client.get(reverse(name, args=args), params, **headers)


class GalleryScopeTestCase(GalleryTestCase):
    def test_project_gallery_shows_its_images_newest_first(self):
        response = self.get("project_gallery", self.project.pk)
        self.assertEqual(ids_in(response), [self.owl.pk, self.fox.pk])
        self.assertContains(response, "2 images")
        self.assertTemplateUsed(response, "gallery/gallery.html")

    def test_team_gallery_shows_every_project_of_the_team(self):
        response = self.get("team_gallery", self.team.pk)
        self.assertEqual(ids_in(response), [self.cover.pk, self.owl.pk, self.fox.pk])

    def test_my_images_are_mine_in_teams_i_am_in(self):
        response = self.get("my_images", as_user=self.editor)
        self.assertEqual(ids_in(response), [self.cover.pk, self.fox.pk])
        Membership.objects.filter(user=self.editor, team=self.team).delete()
        self.assertEqual(ids_in(self.get("my_images", as_user=self.editor)), [])

    def test_grids_use_thumbnails(self):
        image_thumbnails_make(image_id=self.fox.pk)
        response = self.get("project_gallery", self.project.pk)
        thumb = reverse("image_thumbnail", args=[self.fox.pk, 256])
        self.assertContains(response, f'src="{thumb}"')
        self.assertNotContains(response, f'src="{self.fox.file_url()}"')

    def test_the_page_has_the_lightbox_and_its_script(self):
        response = self.get("team_gallery", self.team.pk)
        self.assertContains(response, 'id="lightbox"')
        self.assertContains(response, "js/lightbox.js")
        self.assertContains(response, f'data-full="{self.fox.file_url()}"')

    def test_empty_states(self):
        empty = Project.objects.create(team=self.team, name="Empty")
        self.assertContains(self.get("project_gallery", empty.pk), "No images yet")
        self.assertContains(self.get("my_images", as_user=self.admin), "No images yet")


class GalleryLinksTestCase(GalleryTestCase):
    def test_nav_has_my_images(self):
        response = self.get("dashboard")
        self.assertContains(response, f'href="{reverse("my_images")}"')
        self.assertContains(response, f'href="{reverse("team_gallery", args=[self.team.pk])}"')

    def test_studio_links_to_the_project_gallery(self):
        response = self.get("project_studio", self.project.pk)
        gallery = reverse("project_gallery", args=[self.project.pk])
        self.assertContains(response, f'href="{gallery}"')

    def test_team_page_links_to_the_team_gallery(self):
        response = self.get("team_detail", self.team.pk)
        self.assertContains(response, f'href="{reverse("team_gallery", args=[self.team.pk])}"')


class GalleryFilterTestCase(GalleryTestCase):
    def test_prompt_search(self):
        response = self.get("team_gallery", self.team.pk, q="FOX")
        self.assertEqual(ids_in(response), [self.cover.pk, self.fox.pk])
        self.assertContains(response, "2 images match the filters")

    def test_model(self):
        response = self.get("team_gallery", self.team.pk, model=self.other_model.pk)
        self.assertEqual(ids_in(response), [self.owl.pk])

    def test_user(self):
        response = self.get("team_gallery", self.team.pk, user=self.owner.pk)
        self.assertEqual(ids_in(response), [self.owl.pk])

    def test_project_in_the_team_gallery(self):
        response = self.get("team_gallery", self.team.pk, project=self.second_project.pk)
        self.assertEqual(ids_in(response), [self.cover.pk])

    def test_mode(self):
        response = self.get("project_gallery", self.project.pk, mode="img2img")
        self.assertEqual(ids_in(response), [self.owl.pk])

    def test_date_range(self):
        day = (self.owl.created_at).date()
        response = self.get(
            "team_gallery", self.team.pk, date_from=day.isoformat(), date_to=day.isoformat()
        )
        self.assertEqual(ids_in(response), [self.owl.pk])
        response = self.get("team_gallery", self.team.pk, date_from=day.isoformat())
        self.assertEqual(ids_in(response), [self.cover.pk, self.owl.pk])

    def test_filters_combine(self):
        response = self.get("team_gallery", self.team.pk, q="fox", project=self.project.pk)
        self.assertEqual(ids_in(response), [self.fox.pk])

    def test_choices_are_what_the_gallery_holds(self):
        response = self.get("project_gallery", self.project.pk)
        form = response.context["form"]
        self.assertEqual(
            set(form.fields["model"].queryset), {self.model, self.other_model}
        )
        self.assertEqual(set(form.fields["user"].queryset), {self.editor, self.owner})
        self.assertNotIn("project", form.fields)
        mine = self.get("my_images", as_user=self.editor).context["form"]
        self.assertNotIn("user", mine.fields)
        self.assertEqual(set(mine.fields["project"].queryset), {self.project, self.second_project})

    def test_a_value_from_elsewhere_is_refused_and_the_rest_applies(self):
        # Her project is no choice of this team's gallery: no peeking through a filter.
        response = self.get("team_gallery", self.team.pk, project=self.other_project.pk, q="fox")
        self.assertEqual(ids_in(response), [self.cover.pk, self.fox.pk])
        self.assertContains(response, "This filter is not applied")

    def test_bad_dates(self):
        response = self.get("team_gallery", self.team.pk, date_from="2030-01-02",
                            date_to="2030-01-01")
        self.assertContains(response, "The end date is before the start date.")
        response = self.get("team_gallery", self.team.pk, date_from="yesterday")
        self.assertEqual(len(ids_in(response)), 3)

    def test_no_match(self):
        response = self.get("team_gallery", self.team.pk, q="zebra")
        self.assertContains(response, "No images match")

    def test_htmx_filter_request_gets_the_results_fragment(self):
        response = self.get("team_gallery", self.team.pk, q="owl", headers=HTMX)
        self.assertNotContains(response, "<html")
        self.assertContains(response, 'id="gallery-results"')
        self.assertEqual(ids_in(response), [self.owl.pk])
        self.assertIn("HX-Request", response["Vary"])


class GalleryPagingTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        job = make_job(cls.project, cls.editor, cls.model)
        base = timezone.now()
        cls.images = [make_image(job) for _ in range(PAGE_SIZE + 5)]
        # Two share a time: the id breaks the tie, so none is repeated or skipped.
        for n, image in enumerate(cls.images):
            Image.objects.filter(pk=image.pk).update(
                created_at=base - timedelta(seconds=n // 2 * 2)
            )

    def test_pages_follow_each_other_without_repeats(self):
        self.client.force_login(self.viewer)
        url = reverse("project_gallery", args=[self.project.pk])
        first = self.client.get(url)
        self.assertEqual(len(ids_in(first)), PAGE_SIZE)
        cursor = first.context["page"].next_cursor
        self.assertContains(first, "data-gallery-more")
        second = self.client.get(url, {"cursor": cursor}, **HTMX)
        self.assertNotContains(second, "<html")
        self.assertNotContains(second, 'id="gallery-results"')
        self.assertNotContains(second, "data-gallery-more")
        seen = ids_in(first) + ids_in(second)
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(
            seen, list(Image.objects.order_by("-created_at", "-pk").values_list("pk", flat=True))
        )

    def test_the_next_page_keeps_the_filters(self):
        self.client.force_login(self.viewer)
        url = reverse("project_gallery", args=[self.project.pk])
        first = self.client.get(url, {"q": "lighthouse"})
        self.assertContains(first, "q=lighthouse&amp;cursor=")

    def test_a_bad_cursor_starts_at_the_top(self):
        self.client.force_login(self.viewer)
        url = reverse("project_gallery", args=[self.project.pk])
        # "²" passes str.isdigit() but not int(): it must not become a 500.
        for cursor in ("nonsense", "1.x", "9" * 40 + ".1", "-5.3", "².1"):
            with self.subTest(cursor=cursor):
                response = self.client.get(url, {"cursor": cursor}, **HTMX)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(len(ids_in(response)), PAGE_SIZE)
                self.assertContains(response, 'id="gallery-results"')

    def test_most_liked_pages_follow_each_other_without_repeats(self):
        fans = [User.objects.create_user(f"fan{n}") for n in range(2)]
        for n, image in enumerate(self.images):
            for fan in fans[: n % 3]:  # thirds share a like count: ties everywhere
                Like.objects.create(user=fan, image=image)
        self.client.force_login(self.viewer)
        url = reverse("project_gallery", args=[self.project.pk])
        first = self.client.get(url, {"sort": "liked"})
        self.assertContains(first, "most liked first")
        cursor = first.context["page"].next_cursor
        second = self.client.get(url, {"sort": "liked", "cursor": cursor}, **HTMX)
        seen = ids_in(first) + ids_in(second)
        expected = sorted(
            Image.objects.annotate(like_total=Count("likes")),
            key=lambda image: (image.like_total, image.created_at, image.pk),
            reverse=True,
        )
        self.assertEqual(seen, [image.pk for image in expected])

    def test_a_bad_most_liked_cursor_starts_at_the_top(self):
        self.client.force_login(self.viewer)
        url = reverse("project_gallery", args=[self.project.pk])
        for cursor in ("².1.1", "1.².1", "x.1.1"):
            with self.subTest(cursor=cursor):
                response = self.client.get(url, {"sort": "liked", "cursor": cursor}, **HTMX)
                self.assertEqual(len(ids_in(response)), PAGE_SIZE)

    def test_a_newest_cursor_in_most_liked_order_starts_at_the_top(self):
        self.client.force_login(self.viewer)
        url = reverse("project_gallery", args=[self.project.pk])
        cursor = self.client.get(url).context["page"].next_cursor
        response = self.client.get(url, {"sort": "liked", "cursor": cursor}, **HTMX)
        self.assertEqual(len(ids_in(response)), PAGE_SIZE)
        self.assertContains(response, 'id="gallery-results"')

    def test_cursor_round_trip(self):
        image = self.images[3]
        image.refresh_from_db()
        self.assertEqual(decode_cursor(encode_cursor(image)), (image.created_at, image.pk))


class GalleryQueryCountTestCase(StudioTestCase):
    """A page costs the same number of queries for 10 images as for 100."""

    def fill(self, count):
        Image.objects.all().delete()
        second = Project.objects.create(team=self.team, name=f"More {count}")
        for n in range(count):
            project = self.project if n % 2 else second
            user = self.editor if n % 3 else self.owner
            image = make_image(make_job(project, user, self.model, prompt=f"fox {n}"))
            if n % 4 == 0:
                image_thumbnails_make(image_id=image.pk)

    def count_queries(self, url, params, headers=None):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(url, params, **(headers or {}))
        self.assertEqual(response.status_code, 200)
        return len(queries), response

    @mock.patch("gallery.browse.PAGE_SIZE", 2)  # so that 10 images make two pages too
    def test_constant_in_the_number_of_images(self):
        self.client.force_login(self.editor)
        pages = [
            (reverse("project_gallery", args=[self.project.pk]), {}),
            (reverse("team_gallery", args=[self.team.pk]), {}),
            (reverse("my_images"), {}),
            (reverse("team_gallery", args=[self.team.pk]),
             {"q": "fox", "model": self.model.pk, "user": self.editor.pk, "mode": "txt2img",
              "date_from": "2000-01-01"}),
            (reverse("project_gallery", args=[self.project.pk]), {"sort": "liked"}),
        ]
        counts = {}
        for size in (10, 100):
            self.fill(size)
            for n, (url, params) in enumerate(pages):
                counts.setdefault(n, []).append(self.count_queries(url, params)[0])
                _, response = self.count_queries(url, params)
                cursor = response.context["page"].next_cursor
                if cursor:  # the next page, as infinite scroll asks for it
                    counts.setdefault(f"{n}-next", []).append(
                        self.count_queries(url, {**params, "cursor": cursor}, HTMX)[0]
                    )
        self.assertEqual(len(counts), 2 * len(pages))  # every gallery had a next page
        for page, (small, large) in counts.items():
            with self.subTest(page=page):
                self.assertEqual(small, large)
