"""The generate form's HTMX answers (issue #19): the form alone, or the form and the queue,
without the queries of the parts of the studio page they don't render."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generation.models import GenerationJob
from tests.base import GenerateFormTestCase, make_image, make_job
from tests.generation.parameters_import.test_parameters_import import png_bytes, upload

QUERIES_OF_A_NEW_JOB = 16


class StudioAnswerTests(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {
            "prompt": "a house by a lake", "model": self.model.pk, "steps": 10,
            "guidance_scale": 7.0, "width": 256, "height": 256, "batch_size": 1,
            "batch_count": 1,
        }
        make_image(make_job(self.project, self.editor, self.model))

    def image_queries(self, **overrides):
        with CaptureQueriesContext(connection) as queries:
            response = self.post(**overrides)
        return response, [query["sql"] for query in queries.captured_queries
                          if 'FROM "gallery_image"' in query["sql"]]

    def test_a_refused_form_answers_the_form_alone(self):
        response, image_queries = self.image_queries(steps=0)
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, 'name="prompt"', status_code=422)
        self.assertNotContains(response, 'id="gallery-grid"', status_code=422)
        self.assertEqual(image_queries, [])

    def test_a_new_job_answers_the_queue_and_a_random_seed_alone(self):
        """The form stays as the user left it (its uploads and mask too); only the seed goes
        back to random, and the queue shows the new job, both out of band."""
        response, image_queries = self.image_queries(seed=1234)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(GenerationJob.objects.filter(prompt="a house by a lake").count(), 1)
        self.assertEqual(response["HX-Reswap"], "none")
        self.assertContains(response, 'id="job-list"')
        self.assertContains(response, 'hx-swap-oob="true"', count=2)
        self.assertContains(response, "a house by a lake")
        self.assertInHTML(
            '<input type="number" name="seed" id="id_seed" placeholder="Random" hx-swap-oob="true"'
            ' min="0" max="18446744073709551615" aria-describedby="id_seed_helptext">',
            response.content.decode(),
        )
        self.assertNotContains(response, 'id="generate-form"')
        self.assertNotContains(response, "1234")
        self.assertEqual(image_queries, [])

    def test_a_new_job_answer_costs_its_queries_alone(self):
        """Permission, the form's checks, the job's insert and dispatch, and the queue: no
        query for the form's model, LoRA or style choices, which it no longer renders."""
        self.post()  # the first post's session and permission caches
        with self.assertNumQueries(QUERIES_OF_A_NEW_JOB):
            self.assertEqual(self.post().status_code, 200)

    def test_a_form_that_shows_errors_is_replaced(self):
        refused = self.post(steps=0)
        self.assertContains(refused, 'name="replace_form"', status_code=422)
        response = self.post(replace_form="1")
        self.assertEqual(response.status_code, 200)
        self.assertNotIn("HX-Reswap", response)
        self.assertContains(response, 'id="generate-form"')
        self.assertNotContains(response, 'name="replace_form"')
        self.assertNotContains(response, 'class="field-error"')
        self.assertContains(response, 'id="job-list"')

    def test_a_form_that_shows_an_import_notice_is_replaced(self):
        text = "a red fox\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 256x256"
        response = self.client.post(
            reverse("parameters_import", args=[self.project.pk]),
            {"prompt": "", "model": self.model.pk,
             "image": upload(png_bytes({"parameters": text}))},
            headers={"HX-Request": "true"},
        )
        self.assertContains(response, "data-import-notice")
        self.assertContains(response, 'name="replace_form"')

    def test_the_whole_page_still_shows_the_gallery(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertNotContains(response, 'name="replace_form"')
        self.assertContains(response, '<figure class="thumb', count=1)
