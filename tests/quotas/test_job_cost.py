"""A job's cost in GPU-seconds before it is queued (from a table, or calibrated by what the
workers measured), what the worker actually spent charged to the team once, and training
runs refused when larger than any worker's GPU."""

from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

from django.urls import reverse
from django.utils import timezone

from generation.execution import job_execute
from generation.models import DiffusionModel, JobStatus, ModelFamily, ModelKind
from generation.services import job_build
from generation.signals import training_run_ended
from generation.training.models import TrainingRun
from studio.quotas.charging import training_usage_charge, usage_charge
from studio.quotas.costs import STEP_SECONDS_PER_MEGAPIXEL, job_estimate, job_work
from studio.quotas.models import QuotaRefusal, RefusalReason, UsageRecord, WorkerReport
from studio.quotas.signals import gpu_report
from tests.base import StudioTestCase, make_job
from tests.generation.training.test_training_jobs import TRAINING_FORM
from tests.quota_helpers import fake_result
from tests.subject_builders import make_run, make_subject

MP_512 = 512 * 512 / 1e6


class EstimateTests(StudioTestCase):
    def params(self, **changes):
        return {
            "model": self.model, "prompt": "a fox", "steps": 20, "guidance_scale": 7.0,
            "width": 512, "height": 512, **changes,
        }

    def estimate(self, **changes):
        return job_estimate(job_build(user=self.editor, project=self.project,
                                      params=self.params(**changes)))

    def test_the_table_prices_steps_pixels_and_the_vae_decode(self):
        # 20 steps and the decode (2 steps' worth) of a quarter megapixel.
        self.assertAlmostEqual(self.estimate(), STEP_SECONDS_PER_MEGAPIXEL["sd15"] * 22 * MP_512)
        self.assertAlmostEqual(self.estimate(steps=42), 2 * self.estimate())
        self.assertAlmostEqual(self.estimate(width=1024, height=512), 2 * self.estimate())

    def test_batch_size_hires_controlnet_and_ip_adapter_each_cost_more(self):
        base = self.estimate()
        self.assertAlmostEqual(self.estimate(batch_size=4), 4 * base)
        hires = self.estimate(hires_fix=True, hires_scale=2.0, hires_steps=20, hires_strength=0.5)
        # The second pass: 10 steps (strength 0.5) and a decode at four times the pixels.
        self.assertAlmostEqual(hires, base + STEP_SECONDS_PER_MEGAPIXEL["sd15"] * 12 * 4 * MP_512)
        control = DiffusionModel.objects.create(
            name="canny", source="/m/canny", kind=ModelKind.CONTROLNET)
        adapter = DiffusionModel.objects.create(
            name="ipa", source="/m/ipa", kind=ModelKind.IP_ADAPTER)
        self.assertAlmostEqual(
            self.estimate(control_model=control, control_upload="uploads/edges.png"), 1.5 * base
        )
        self.assertAlmostEqual(
            self.estimate(ip_adapter_model=adapter, ip_adapter_upload="uploads/face.png"),
            1.1 * base,
        )

    def test_sdxl_costs_more_per_pixel_than_sd15(self):
        xl = DiffusionModel.objects.create(name="xl", source="/m/xl", family=ModelFamily.SDXL)
        self.assertAlmostEqual(self.estimate(model=xl), 2 * self.estimate())

    def test_workers_measurements_replace_the_table_once_reported(self):
        WorkerReport.objects.create(worker="a:1", step_seconds={"sd15": 0.05})
        WorkerReport.objects.create(worker="b:1", step_seconds={"sd15": 0.15, "sdxl": 9})
        WorkerReport.objects.create(
            worker="gone:1", step_seconds={"sd15": 50.0},
            last_seen=timezone.now() - timedelta(days=2),
        )
        # The average of the workers seen lately; the one gone for two days is left out.
        self.assertAlmostEqual(self.estimate(), 0.1 * 22 * MP_512)


class ChargeTests(StudioTestCase):
    def finished_job(self, **fields):
        return make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED,
                        worker="gpu-host:7", **fields)

    def test_a_finished_job_is_charged_its_share_of_each_batch_once(self):
        job = self.finished_job(batch_size=2)
        estimate = job_estimate(job)  # from the table: no worker has measured yet
        passes = [[fake_result(elapsed_s=8.0, batch_size=4), fake_result(elapsed_s=8.0,
                                                                         batch_size=4)]]
        with mock.patch("gpu_workers.devices.device_description",
                        return_value=("NVIDIA H100 80GB HBM3", 80 * 1024**3)):
            usage_charge(job=job, passes=passes)
            usage_charge(job=job, passes=passes)  # a second call charges nothing more

        record = UsageRecord.objects.get()
        self.assertEqual(record.gpu_seconds, 4.0)  # 8 s for 4 rows, 2 of them this job's
        self.assertAlmostEqual(record.estimated_gpu_seconds, estimate)
        self.assertEqual((record.team, record.user, record.images), (self.team, self.editor, 2))
        self.assertEqual(record.model_name, "tiny-sd15")
        report = WorkerReport.objects.get(worker="gpu-host:7")
        self.assertEqual(report.device, "NVIDIA H100 80GB HBM3")
        self.assertEqual(report.gpu_memory_bytes, 80 * 1024**3)
        self.assertAlmostEqual(report.step_seconds["sd15"], 4.0 / (job_work(job) * 2))

    def test_a_canceled_job_is_charged_its_estimates_share_of_the_steps_it_made(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.CANCELED,
                       progress_step=1, steps=4)
        usage_charge(job=job, passes=[])
        record = UsageRecord.objects.get()
        self.assertAlmostEqual(record.gpu_seconds, job_estimate(job) / 4)
        self.assertEqual(record.images, 0)
        self.assertFalse(WorkerReport.objects.filter(step_seconds__has_key="sd15").exists())

    def test_the_worker_charges_both_passes_of_a_hires_job(self):
        job = make_job(self.project, self.editor, self.model, batch_size=2, hires_scale=2.0,
                       hires_steps=4, hires_strength=0.5)
        first = [fake_result(elapsed_s=2.0, batch_size=4), fake_result(elapsed_s=2.0,
                                                                      batch_size=4)]
        second = [fake_result(elapsed_s=6.0, batch_size=2, size=(128, 128)),
                  fake_result(elapsed_s=6.0, batch_size=2, size=(128, 128))]
        with mock.patch("generation.execution.generate_all", side_effect=[first, second]), \
                mock.patch("generation.execution.publish"):
            job_execute(job_id=job.pk)

        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.FINISHED)
        # First pass: 2 of 4 rows of 2 s; second: 2 of 2 rows of 6 s.
        self.assertEqual(UsageRecord.objects.get(job=job).gpu_seconds, 1.0 + 6.0)

    def test_a_training_run_is_charged_from_its_start_to_its_end(self):
        subject = make_subject(self.team, self.editor, images=0)
        run = make_run(subject, self.project, self.editor, self.model, estimated_seconds=90)
        started = timezone.now() - timedelta(minutes=5)
        run.status, run.started_at, run.finished_at = JobStatus.FINISHED, started, timezone.now()
        run.save()
        # As the training worker tells it (generation.signals), the quotas app charging.
        training_run_ended.send(sender=TrainingRun, run_id=run.pk)
        record = UsageRecord.objects.get(training_run=run)
        self.assertAlmostEqual(record.gpu_seconds, 300, delta=1)
        self.assertEqual(record.estimated_gpu_seconds, 90)

    def test_a_training_run_still_running_is_not_charged(self):
        subject = make_subject(self.team, self.editor, images=0)
        run = make_run(subject, self.project, self.editor, self.model, status=JobStatus.RUNNING)
        training_usage_charge(run_id=run.pk)
        self.assertFalse(UsageRecord.objects.exists())


class TrainingMemoryTests(StudioTestCase):
    def test_a_run_larger_than_any_workers_gpu_is_refused_naming_the_memory(self):
        subject = make_subject(self.team, self.editor)
        WorkerReport.objects.create(worker="small:1", device="RTX", gpu_memory_bytes=4 * 1024**3)
        self.client.force_login(self.editor)
        data = {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM}
        with mock.patch("generation.training.services.enqueue_training") as enqueue:
            response = self.client.post(reverse("training_start", args=[subject.pk]), data)

        self.assertEqual(response.status_code, 422)
        self.assertContains(response, "of GPU memory, more than the largest GPU of any worker "
                            "(4.0 GB)", status_code=422)
        self.assertFalse(subject.training_runs.exists())
        enqueue.assert_not_called()
        self.assertEqual(QuotaRefusal.objects.get().reason, RefusalReason.GPU_MEMORY)

    def test_a_run_that_fits_the_largest_gpu_is_queued(self):
        subject = make_subject(self.team, self.editor)
        WorkerReport.objects.create(worker="big:1", gpu_memory_bytes=80 * 1024**3)
        self.client.force_login(self.editor)
        data = {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM}
        with mock.patch("generation.training.services.enqueue_training"):
            response = self.client.post(reverse("training_start", args=[subject.pk]), data)
        self.assertEqual(response.status_code, 302)
        self.assertTrue(subject.training_runs.exists())


class WorkerStartReportTests(StudioTestCase):
    def sender(self, *queues):
        return SimpleNamespace(task_consumer=SimpleNamespace(
            queues=[SimpleNamespace(name=name) for name in queues]))

    def test_a_gpu_or_training_worker_reports_its_gpu_as_it_starts(self):
        with mock.patch("gpu_workers.devices.device_description",
                        return_value=("NVIDIA H200", 141 * 1024**3)):
            gpu_report(sender=self.sender("train"))
        report = WorkerReport.objects.get()
        self.assertEqual((report.device, report.gpu_memory_bytes), ("NVIDIA H200", 141 * 1024**3))

    def test_a_cpu_worker_reports_nothing(self):
        with mock.patch("gpu_workers.devices.device_description") as describe:
            gpu_report(sender=self.sender("default", "moderation"))
        describe.assert_not_called()
        self.assertFalse(WorkerReport.objects.exists())
