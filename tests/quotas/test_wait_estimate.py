"""The time left of running and queued jobs (studio.quotas.costs.jobs_seconds_left), which
the studio's job list asks for at every poll: each job's share is its own estimate, and a
long queue costs one read of plain columns, each distinct recipe worked out once."""

from unittest import mock

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generation.models import DiffusionModel, GenerationJob, JobMode, JobStatus, ModelKind
from studio.quotas import costs
from studio.quotas.models import WorkerReport
from tests.base import StudioTestCase, make_job


class WaitEstimateTests(StudioTestCase):
    def setUp(self):
        WorkerReport.objects.create(worker="gpu:1", step_seconds={self.model.family: 0.5})

    def seconds_left(self):
        return costs.jobs_seconds_left(positions=GenerationJob.objects.positions())

    def test_every_recipe_column_counts_as_the_jobs_own_estimate_does(self):
        control = DiffusionModel.objects.create(
            name="canny", source="/m/canny", kind=ModelKind.CONTROLNET)
        adapter = DiffusionModel.objects.create(
            name="ipa", source="/m/ipa", kind=ModelKind.IP_ADAPTER)
        recipe = {
            "mode": JobMode.IMG2IMG, "strength": 0.6, "steps": 30, "width": 640, "height": 384,
            "hires_scale": 1.5, "hires_steps": 12, "hires_strength": 0.4, "batch_size": 2,
            "control_model": control, "ip_adapter_model": adapter,
        }
        running = make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING,
                           progress_step=9, started_at=timezone.now(), **recipe)
        queued = make_job(self.project, self.editor, self.model, **recipe)
        plain = make_job(self.project, self.owner, self.model)
        reports = costs.recent_worker_reports()
        running_left = costs.job_estimate(running, reports=reports) * (
            1 - 9 / running.total_steps())
        left = self.seconds_left()
        self.assertAlmostEqual(left[running.pk], running_left)
        order = GenerationJob.objects.positions()
        first, second = sorted((queued, plain), key=lambda job: order[job.pk])
        self.assertAlmostEqual(
            left[first.pk], running_left + costs.job_estimate(first, reports=reports))
        self.assertAlmostEqual(
            left[second.pk], left[first.pk] + costs.job_estimate(second, reports=reports))

    def test_a_long_queue_is_one_read_and_each_recipe_is_worked_out_once(self):
        for number in range(30):
            make_job(self.project, self.editor, self.model, steps=20 if number % 2 else 25)
        positions, job_work = GenerationJob.objects.positions(), costs.job_work
        with mock.patch.object(costs, "job_work", side_effect=job_work) as worked_out:
            with CaptureQueriesContext(connection) as queries:
                left = costs.jobs_seconds_left(positions=positions)
        self.assertEqual(len(left), 30)
        self.assertEqual(worked_out.call_count, 2)
        # The worker reports and the queue's columns.
        self.assertEqual(len(queries), 2)
