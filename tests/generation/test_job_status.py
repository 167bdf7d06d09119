from django.urls import reverse

from generation.models import JobStatus
from tests.base import StudioTestCase, make_image, make_job


class JobStatusTestCase(StudioTestCase):
    def test_queued_job_reports_its_position(self):
        job = make_job(self.project, self.editor, self.model)
        self.client.force_login(self.viewer)
        state = self.client.get(reverse("job_detail", args=[job.pk])).json()
        self.assertEqual(state["type"], "job.queued")
        self.assertEqual(state["position"], 1)
        self.assertEqual(state["images"], [])

    def test_finished_job_lists_its_images(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        image = make_image(job)
        self.client.force_login(self.editor)
        state = self.client.get(reverse("job_detail", args=[job.pk])).json()
        self.assertEqual(state["status"], "finished")
        self.assertIsNone(state["position"])
        self.assertEqual(state["images"][0]["url"], image.file_url())

    def test_failed_job_says_why(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FAILED,
                       error="The worker could not generate this image (OSError: no model).")
        self.client.force_login(self.editor)
        state = self.client.get(reverse("job_detail", args=[job.pk])).json()
        self.assertIn("no model", state["error"])

    def test_outsider_gets_404(self):
        job = make_job(self.project, self.editor, self.model)
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(reverse("job_detail", args=[job.pk])).status_code, 404)
