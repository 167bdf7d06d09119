from django.urls import reverse

from generation.models import JobStatus
from tests.base import StudioTestCase, make_image, make_job


class ProjectStudioTestCase(StudioTestCase):
    def setUp(self):
        self.url = reverse("project_studio", args=[self.project.pk])

    def test_editor_gets_the_generate_form_with_model_defaults(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.url)
        self.assertContains(response, 'id="generate-form"')
        self.assertContains(response, f'data-events-path="/ws/projects/{self.project.pk}/"')
        form = response.context["form"]
        self.assertEqual(form.initial["width"], 256)
        self.assertEqual(form.initial["model"], self.model.pk)

    def test_viewer_sees_the_project_but_no_form(self):
        self.client.force_login(self.viewer)
        response = self.client.get(self.url)
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, 'id="generate-form"')
        self.assertContains(response, "View only")

    def test_queued_jobs_show_their_place_in_the_whole_queue(self):
        make_job(self.other_project, self.outsider, self.model)  # someone else is first
        job = make_job(self.project, self.editor, self.model)
        self.client.force_login(self.editor)
        response = self.client.get(self.url)
        self.assertContains(response, "#2 in queue")
        self.assertEqual(job.queue_position(), 2)

    def test_running_job_shows_its_step(self):
        make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING,
                 progress_step=3, steps=8)
        self.client.force_login(self.editor)
        self.assertContains(self.client.get(self.url), "Step 3 / 8")

    def test_images_are_shown_with_their_prompt_as_alt_text(self):
        image = make_image(make_job(self.project, self.editor, self.model,
                                    status=JobStatus.FINISHED))
        self.client.force_login(self.viewer)
        response = self.client.get(self.url)
        self.assertContains(response, f'src="{image.file_url()}"')
        self.assertContains(response, 'alt="a lighthouse at dusk"')

    def test_query_count_does_not_grow_with_jobs_and_images(self):
        self.client.force_login(self.editor)
        for _ in range(3):
            make_image(make_job(self.project, self.editor, self.model))
        # Queued jobs here: their places in line cost two queries (generation.queue); the
        # team's LoRAs for the picker one, its styles one, the ControlNet models one, the
        # IP-Adapters one, the top bar's unread notifications one; the cards' LoRAs one, and
        # their ETA two (every active job, the workers' reports). The session comes from
        # the cache.
        with self.assertNumQueries(18) as small:
            self.client.get(self.url)
        for _ in range(12):
            make_image(make_job(self.project, self.editor, self.model))
        with self.assertNumQueries(len(small.captured_queries)):
            self.client.get(self.url)
