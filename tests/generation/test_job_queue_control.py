"""Cancel, retry, priority and duplicate, from the project's queue."""

from unittest import mock

from django.urls import reverse

from generation.models import GenerationJob, JobPriority, JobStatus
from tests.base import StudioTestCase, make_job


class QueueControlTestCase(StudioTestCase):
    def setUp(self):
        dispatch = mock.patch("generation.services.enqueue_generation")
        self.enqueue = dispatch.start()
        self.addCleanup(dispatch.stop)
        publish = mock.patch("generation.services.publish")
        self.publish = publish.start()
        self.addCleanup(publish.stop)

    def post(self, user, name, job, data=None):
        self.client.force_login(user)
        return self.client.post(reverse(name, args=[job.pk]), data or {}, HTTP_HX_REQUEST="true")

    def events(self, type_):
        payloads = [call.args[1] for call in self.publish.call_args_list]
        return [payload for payload in payloads if payload["type"] == type_]


class CancelTestCase(QueueControlTestCase):
    def test_author_cancels_a_queued_job_and_it_never_runs(self):
        job = make_job(self.project, self.editor, self.model)
        waiting = make_job(self.project, self.admin, self.model)

        response = self.post(self.editor, "job_cancel", job)

        self.assertEqual(response.status_code, 200)
        self.assertContains(response, 'id="job-list"')
        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.CANCELED)
        self.assertIn("before it started", job.error)
        self.assertEqual(self.events("job.canceled")[0]["job_id"], job.pk)
        # The jobs behind it move up and are told so, in one event for their project.
        self.assertEqual(self.events("queue.positions"), [
            {"type": "queue.positions", "project_id": self.project.pk,
             "positions": [[waiting.pk, 1]]}
        ])

    def test_cancelling_a_running_job_asks_its_worker_to_stop(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING)

        self.assertEqual(self.post(self.editor, "job_cancel", job).status_code, 200)

        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.RUNNING)  # until the worker's next step
        self.assertIsNotNone(job.cancel_requested_at)

    def test_a_project_admin_may_cancel_anyones_job(self):
        job = make_job(self.project, self.editor, self.model)
        self.assertEqual(self.post(self.admin, "job_cancel", job).status_code, 200)
        self.assertEqual(GenerationJob.objects.get(pk=job.pk).status, JobStatus.CANCELED)

    def test_another_editor_may_not(self):
        job = make_job(self.project, self.admin, self.model)
        self.assertEqual(self.post(self.editor, "job_cancel", job).status_code, 403)
        self.assertEqual(GenerationJob.objects.get(pk=job.pk).status, JobStatus.QUEUED)

    def test_outsider_gets_404(self):
        job = make_job(self.project, self.editor, self.model)
        self.assertEqual(self.post(self.outsider, "job_cancel", job).status_code, 404)
        self.assertEqual(GenerationJob.objects.get(pk=job.pk).status, JobStatus.QUEUED)

    def test_an_ended_job_cannot_be_canceled(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        response = self.post(self.editor, "job_cancel", job)
        self.assertEqual(response.status_code, 409)
        self.assertEqual(GenerationJob.objects.get(pk=job.pk).status, JobStatus.FINISHED)

    def test_get_is_not_allowed(self):
        job = make_job(self.project, self.editor, self.model)
        self.client.force_login(self.editor)
        self.assertEqual(self.client.get(reverse("job_cancel", args=[job.pk])).status_code, 405)


class RetryTestCase(QueueControlTestCase):
    def test_a_failed_job_runs_again_with_the_same_parameters(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FAILED,
                       seed=777, error="boom")

        with self.captureOnCommitCallbacks(execute=True):
            response = self.post(self.viewer, "job_retry", job)
        self.assertEqual(response.status_code, 403)  # viewers can't generate

        with self.captureOnCommitCallbacks(execute=True):
            response = self.post(self.editor, "job_retry", job)

        self.assertEqual(response.status_code, 200)
        retry = GenerationJob.objects.exclude(pk=job.pk).get()
        self.assertEqual(retry.status, JobStatus.QUEUED)
        self.assertEqual(retry.parameters(), job.parameters())
        self.assertEqual(retry.created_by, self.editor)
        self.enqueue.assert_called_once_with(retry.pk)

    def test_only_failed_or_canceled_jobs_are_retried(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        self.assertEqual(self.post(self.editor, "job_retry", job).status_code, 409)
        self.assertEqual(GenerationJob.objects.count(), 1)

    def test_outsider_gets_404(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FAILED)
        self.assertEqual(self.post(self.outsider, "job_retry", job).status_code, 404)
        self.assertEqual(GenerationJob.objects.count(), 1)


class PriorityTestCase(QueueControlTestCase):
    def test_a_team_admin_moves_a_job_ahead(self):
        first = make_job(self.project, self.editor, self.model)
        job = make_job(self.project, self.owner, self.model)

        response = self.post(self.admin, "job_priority", job, {"priority": JobPriority.HIGH})

        self.assertEqual(response.status_code, 200)
        self.assertEqual(GenerationJob.objects.get(pk=job.pk).queue_position(), 1)
        self.assertEqual(GenerationJob.objects.get(pk=first.pk).queue_position(), 2)

    def test_editors_may_not_even_for_their_own_jobs(self):
        job = make_job(self.project, self.editor, self.model)
        response = self.post(self.editor, "job_priority", job, {"priority": JobPriority.HIGH})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(GenerationJob.objects.get(pk=job.pk).priority, JobPriority.NORMAL)

    def test_outsider_gets_404(self):
        job = make_job(self.project, self.editor, self.model)
        response = self.post(self.outsider, "job_priority", job, {"priority": 1})
        self.assertEqual(response.status_code, 404)

    def test_bad_priority_names_the_allowed_values(self):
        job = make_job(self.project, self.editor, self.model)
        for value in ["", "9", "high", "-1"]:
            with self.subTest(value=value):
                response = self.post(self.admin, "job_priority", job, {"priority": value})
                self.assertEqual(response.status_code, 422)
                self.assertEqual(GenerationJob.objects.get(pk=job.pk).priority, 0)
        self.client.force_login(self.admin)
        page = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(page, "Priority must be one of 0 (Normal), 1 (High), 2 (Urgent).")

    def test_a_running_job_keeps_its_priority(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING)
        response = self.post(self.admin, "job_priority", job, {"priority": 2})
        self.assertEqual(response.status_code, 409)


class DuplicateTestCase(QueueControlTestCase):
    def test_a_job_fills_the_form(self):
        job = make_job(self.project, self.editor, self.model, prompt="a red kite", seed=99,
                       steps=12, width=320)
        self.client.force_login(self.editor)
        response = self.client.get(
            reverse("project_studio", args=[self.project.pk]), {"duplicate": job.pk}
        )
        form = response.context["form"]
        self.assertEqual(form.initial["prompt"], "a red kite")
        self.assertEqual((form.initial["seed"], form.initial["steps"]), (99, 12))
        self.assertContains(response, "a red kite</textarea>")

    def test_a_job_the_user_may_not_see_is_404(self):
        job = make_job(self.other_project, self.outsider, self.model, prompt="secret")
        self.client.force_login(self.editor)
        for value in [job.pk, "nope"]:
            response = self.client.get(
                reverse("project_studio", args=[self.project.pk]), {"duplicate": value}
            )
            self.assertEqual(response.status_code, 404)

    def test_the_queue_offers_the_actions_each_role_may_take(self):
        make_job(self.project, self.editor, self.model)
        self.client.force_login(self.viewer)
        page = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertNotContains(page, "Raise priority")
        self.assertNotContains(page, ">Cancel<")
        self.assertNotContains(page, ">Duplicate<")
        self.client.force_login(self.admin)
        page = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(page, "Raise priority")
        self.assertContains(page, ">Cancel<")
