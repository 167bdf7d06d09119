"""The generate form's HTMX answers (issue #19): the form alone, or the form and the queue,
without the queries of the parts of the studio page they don't render."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generation.models import GenerationJob
from tests.base import GenerateFormTestCase, make_image, make_job


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

    def test_a_new_job_answers_the_form_and_the_queue_without_the_gallery(self):
        response, image_queries = self.image_queries()
        self.assertEqual(response.status_code, 200)
        self.assertEqual(GenerationJob.objects.filter(prompt="a house by a lake").count(), 1)
        self.assertContains(response, "a house by a lake")  # the queue, out of band
        self.assertEqual(image_queries, [])

    def test_the_whole_page_still_shows_the_gallery(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, '<figure class="thumb', count=1)
