"""Web tier speed (issue #19): query shapes the planner can serve from indexes, so that
gallery pages cost the same at 10,000 images (make bench-gallery measures them)."""

import json
import os
import subprocess
import sys
from unittest import skipUnless

from django.db import connection
from django.test import SimpleTestCase
from django.urls import reverse

from gallery import browse
from gallery.models import Image
from generation import prompt_history
from tests.base import StudioTestCase, make_image, make_job


class TeamColumnTests(StudioTestCase):
    def test_an_image_takes_its_projects_team(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.assertEqual(Image.objects.get(pk=image.pk).team_id, self.team.pk)

    def test_the_team_grid_reads_the_images_own_team_column(self):
        sql = str(browse.team_images(self.team).query)
        self.assertIn('"gallery_image"."team_id"', sql)
        self.assertNotIn("accounts_project", sql)

    def test_the_team_grid_shows_its_teams_images_only(self):
        mine = make_image(make_job(self.project, self.editor, self.model, prompt="a red fox"))
        make_image(make_job(self.other_project, self.outsider, self.model, prompt="an owl"))
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("team_gallery", args=[self.team.pk]))
        self.assertEqual([image.pk for image in response.context["images"]], [mine.pk])

    def test_other_user_cant_see_the_team_grid(self):
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("team_gallery", args=[self.team.pk]))
        self.assertEqual(response.status_code, 404)  # not even told it exists

    def test_model_choices_are_the_models_the_scope_used(self):
        from generation.models import DiffusionModel

        unused = DiffusionModel.objects.create(name="unused", source="/models/unused")
        make_image(make_job(self.project, self.editor, self.model))
        choices = browse.filter_choices(browse.team_images(self.team))
        self.assertEqual(list(choices["models"]), [self.model])
        self.assertNotIn("IN (SELECT", str(choices["models"].query))
        self.assertNotIn(unused, choices["models"])

    def test_a_teams_model_choices_walk_each_models_jobs(self):
        # The team's images are most of the table: probing them by job, not scanning them.
        sql = str(browse.filter_choices(browse.team_images(self.team))["models"].query)
        outer_exists = sql.split("EXISTS(", 1)[1]
        self.assertTrue(outer_exists.startswith('SELECT 1 AS "a" FROM "generation_generationjob"'))
        narrow = browse.filter_choices(browse.user_images(self.editor), narrow=True)
        self.assertIn('FROM "gallery_image"', str(narrow["models"].query).split("EXISTS(", 1)[1])

    def test_a_filter_value_is_checked_against_the_listed_choices(self):
        from generation.models import DiffusionModel

        elsewhere = DiffusionModel.objects.create(name="elsewhere", source="/models/elsewhere")
        mine = make_image(make_job(self.project, self.editor, self.model, prompt="a red fox"))
        make_image(make_job(self.other_project, self.outsider, elsewhere, prompt="an owl"))
        self.client.force_login(self.viewer)
        url = reverse("team_gallery", args=[self.team.pk])
        listed = self.client.get(url, {"model": self.model.pk})
        self.assertFalse(listed.context["form"].errors)
        self.assertEqual([image.pk for image in listed.context["images"]], [mine.pk])
        # Another team's model is no choice here: an error on the field, the rest applies.
        other = self.client.get(url, {"model": elsewhere.pk})
        self.assertIn("model", other.context["form"].errors)
        self.assertEqual([image.pk for image in other.context["images"]], [mine.pk])
        for value in ("abc", str(10**30)):
            response = self.client.get(url, {"model": value})
            self.assertEqual(response.status_code, 200)
            self.assertIn("model", response.context["form"].errors)


@skipUnless(connection.vendor == "postgresql", "full text search needs PostgreSQL")
class SearchShapeTests(StudioTestCase):
    def test_a_search_is_a_condition_on_the_rows_not_a_subquery_of_ids(self):
        make_image(make_job(self.project, self.editor, self.model, prompt="a red fox"))
        images = prompt_history.search(browse.team_images(self.team), "fox")
        self.assertNotIn("IN (SELECT", str(images.query))
        self.assertEqual(images.count(), 1)


class CardUrlTests(StudioTestCase):
    def test_card_urls_are_the_reversed_ones(self):
        from django.urls import reverse

        image = make_image(make_job(self.project, self.editor, self.model))
        self.assertEqual(image.get_absolute_url(), reverse("image_detail", args=[image.pk]))
        self.assertEqual(image.file_url(), reverse("image_file", args=[image.pk]))
        self.assertEqual(image.like_url(), reverse("image_like", args=[image.pk]))
        self.assertEqual(
            image.thumbnail_url(256), reverse("image_thumbnail", args=[image.pk, 256])
        )

    def test_card_urls_follow_the_script_prefix(self):
        from django.urls import set_script_prefix

        from gallery.models import image_url

        set_script_prefix("/studio/")
        try:
            self.assertEqual(image_url("image_detail", 7), "/studio/images/7/")
        finally:
            set_script_prefix("/")
        self.assertEqual(image_url("image_detail", 7), "/images/7/")

    def test_a_grid_reverses_no_url_per_card(self):
        from unittest import mock

        for n in range(3):
            make_image(make_job(self.project, self.editor, self.model, seed=n))
        self.client.force_login(self.editor)
        url = reverse("project_gallery", args=[self.project.pk])
        self.client.get(url)  # the URL templates are resolved once, then reused
        with mock.patch("gallery.models.reverse") as reverse_mock:
            response = self.client.get(url)
        self.assertEqual(len(response.context["images"]), 3)
        reverse_mock.assert_not_called()


class ConnectionPoolSettingTests(SimpleTestCase):
    def database_options(self, **env):
        code = (
            "import json, studio.settings as s; "
            "print(json.dumps(s.DATABASES['default'].get('OPTIONS', {})))"
        )
        environment = {**os.environ, "DEBUG": "1", **env}
        result = subprocess.run(
            [sys.executable, "-c", code], env=environment, capture_output=True, text=True,
            check=True,
        )
        return json.loads(result.stdout)

    def test_web_processes_on_postgresql_get_a_pool_of_the_size_asked(self):
        options = self.database_options(
            DATABASE_URL="postgres://postgres@127.0.0.1:5432/studio", DATABASE_POOL_SIZE="8"
        )
        self.assertEqual(options["pool"], {"min_size": 1, "max_size": 8, "timeout": 30})

    def test_no_pool_unless_asked_nor_on_sqlite(self):
        postgres = self.database_options(
            DATABASE_URL="postgres://postgres@127.0.0.1/studio", DATABASE_POOL_SIZE="0"
        )
        self.assertNotIn("pool", postgres)
        sqlite = self.database_options(DATABASE_URL="sqlite:///:memory:", DATABASE_POOL_SIZE="4")
        self.assertNotIn("pool", sqlite)


class HistoryShapeTests(StudioTestCase):
    def test_image_counts_are_counted_for_the_page_not_joined_to_every_job(self):
        from django.test.utils import CaptureQueriesContext

        for seed in range(3):
            job = make_job(self.project, self.editor, self.model, prompt="a red fox", seed=seed)
            make_image(job)
        with CaptureQueriesContext(connection) as queries:
            entries, _ = prompt_history.prompt_entries(
                user=self.editor, jobs=prompt_history.project_jobs(self.project, None)
            )
        self.assertEqual([(entry.runs, entry.image_count) for entry in entries], [(3, 3)])
        grouping = [query["sql"] for query in queries if '"last_run_at"' in query["sql"]]
        self.assertEqual(len(grouping), 1)
        self.assertNotIn("gallery_image", grouping[0])
