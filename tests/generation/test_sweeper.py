"""The sweeper: lapsed leases taken back, lost messages sent again, lost side effects redone,
and every stuck state ends (generation.sweeper, generation.leases)."""

from datetime import timedelta
from unittest import mock

from celery.exceptions import Retry
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from gallery.models import Image
from generation.leases import claim, lapsed_release
from generation.models import GenerationJob, JobStatus
from generation.services import job_cancel, job_dispatch
from generation.sweeper import sweep, sweep_after_restart
from generation.tasks import run_generation_job, run_training
from generation.training.execution import training_claim
from tests.base import StudioTestCase, make_image, make_job
from tests.subject_builders import make_run, make_subject

LAPSED = {"lease_expires_at": timezone.now() - timedelta(seconds=1)}


class SweeperTestCase(StudioTestCase):
    def setUp(self):
        self.events = []
        self.sent = []
        self.waiting = {}
        patches = [
            mock.patch("generation.sweeper.publish",
                       side_effect=lambda group, payload: self.events.append(payload)),
            mock.patch("generation.sweeper.enqueue_generation",
                       side_effect=lambda pk: self.sent.append(("job", pk))),
            mock.patch("generation.sweeper.enqueue_training",
                       side_effect=lambda pk: self.sent.append(("training", pk))),
            mock.patch("gallery.repairs.enqueue_thumbnails",
                       side_effect=lambda pk: self.sent.append(("thumbnails", pk))),
            mock.patch("studio.moderation.repairs.enqueue_scan",
                       side_effect=lambda pk: self.sent.append(("scan", pk))),
            *(mock.patch(f"{module}.waiting",
                         side_effect=lambda queue: self.waiting.get(queue, 0))
              for module in ("generation.sweeper", "gallery.repairs",
                             "studio.moderation.repairs")),
        ]
        for patch in patches:
            patch.start()
            self.addCleanup(patch.stop)

    def running_job(self, **fields):
        fields = {"claims": 1, "worker": "gpu-1:42", **fields}
        return make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING,
                        **fields)


class LapsedLeaseTests(SweeperTestCase):
    def test_a_job_whose_worker_died_is_queued_again_and_woken(self):
        job = self.running_job(attempts=1, progress_step=3, **LAPSED)
        self.assertEqual(sweep(), {"job_lapsed_queued": 1, "job_wake_ups": 1})
        job.refresh_from_db()
        self.assertEqual((job.status, job.attempts, job.claims, job.progress_step),
                         (JobStatus.QUEUED, 1, 1, 0))
        self.assertIsNone(job.lease_expires_at)
        self.assertEqual(self.sent, [("job", job.pk)])
        self.assertEqual(self.events[0]["type"], "job.queued")

    def test_a_job_with_a_live_lease_is_left_alone(self):
        job = self.running_job(lease_expires_at=timezone.now() + timedelta(seconds=30))
        self.assertEqual(sweep(), {})
        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.RUNNING)

    def test_a_job_whose_workers_died_in_every_attempt_fails_saying_so(self):
        job = self.running_job(attempts=3, claims=3, **LAPSED)
        self.assertEqual(sweep(), {"job_lapsed_failed": 1})
        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.FAILED)
        self.assertIn("stopped during each of 3 attempts", job.error)
        self.assertIsNotNone(job.finished_at)
        self.assertEqual((self.events[0]["type"], self.events[0]["error"]),
                         ("job.failed", job.error))
        self.assertEqual(self.sent, [])

    def test_deaths_before_any_step_do_not_use_up_attempts(self):
        # Killed while the model loaded: claimed, never a step.
        job = self.running_job(attempts=0, claims=5, **LAPSED)
        sweep()
        job.refresh_from_db()
        self.assertEqual((job.status, job.attempts), (JobStatus.QUEUED, 0))

    @override_settings(STUDIO_JOB_MAX_CLAIMS=4)
    def test_but_a_job_no_worker_survives_claiming_fails_in_the_end(self):
        job = self.running_job(attempts=0, claims=4, **LAPSED)
        sweep()
        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.FAILED)
        self.assertIn("Workers stopped 4 times before this could start", job.error)

    def test_a_job_whose_owner_asked_to_cancel_it_ends_canceled(self):
        job = self.running_job(cancel_requested_at=timezone.now(), **LAPSED)
        self.assertEqual(sweep(), {"job_lapsed_canceled": 1})
        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.CANCELED)
        self.assertEqual(self.events[0]["type"], "job.canceled")

    def test_two_sweepers_release_a_job_once(self):
        job = self.running_job(**LAPSED)
        seen_by_the_other = GenerationJob.objects.get(pk=job.pk)
        sweep()
        self.assertIsNone(lapsed_release(seen_by_the_other))
        self.assertEqual(self.sent, [("job", job.pk)])

    def test_the_dead_attempt_writes_nothing_once_another_claimed_the_job(self):
        job = make_job(self.project, self.editor, self.model)
        dead = claim(GenerationJob, job.pk)
        GenerationJob.objects.filter(pk=job.pk).update(**LAPSED)
        sweep()
        alive = claim(GenerationJob, job.pk)
        self.assertFalse(dead.worked_on(progress_step=9))
        self.assertFalse(dead.end(JobStatus.FINISHED))
        self.assertTrue(alive.worked_on(progress_step=1))
        job.refresh_from_db()
        self.assertEqual((job.status, job.claims, job.attempts, job.progress_step),
                         (JobStatus.RUNNING, 2, 1, 1))

    def test_a_training_run_whose_worker_died_is_queued_again(self):
        subject = make_subject(self.team, self.editor, images=0)
        run = make_run(subject, self.project, self.editor, self.model,
                       status=JobStatus.RUNNING, claims=1, attempts=1, **LAPSED)
        self.assertEqual(sweep(), {"training_lapsed_queued": 1, "training_wake_ups": 1})
        run.refresh_from_db()
        self.assertEqual(run.status, JobStatus.QUEUED)
        self.assertEqual(self.sent, [("training", run.pk)])


class RestartTests(SweeperTestCase):
    def test_the_embedded_server_takes_back_what_its_previous_run_left_running(self):
        started_at = timezone.now()
        left = self.running_job(started_at=started_at - timedelta(minutes=5),
                                lease_expires_at=started_at + timedelta(seconds=50))
        own = self.running_job(started_at=started_at + timedelta(seconds=1),
                               lease_expires_at=started_at + timedelta(seconds=60))
        sweep_after_restart(started_at)
        self.assertEqual(sweep(), {"job_lapsed_queued": 1, "job_wake_ups": 1})
        left.refresh_from_db()
        own.refresh_from_db()
        self.assertEqual((left.status, own.status), (JobStatus.QUEUED, JobStatus.RUNNING))


class WakeUpTests(SweeperTestCase):
    def test_queued_jobs_without_a_message_get_one_each(self):
        jobs = [make_job(self.project, self.editor, self.model) for _ in range(3)]
        self.assertEqual(sweep(), {"job_wake_ups": 3})
        self.assertEqual(self.sent, [("job", job.pk) for job in jobs])

    def test_jobs_whose_messages_still_wait_get_none(self):
        for _ in range(3):
            make_job(self.project, self.editor, self.model)
        self.waiting["gpu"] = 2
        self.assertEqual(sweep(), {"job_wake_ups": 1})
        self.waiting["gpu"] = 3
        self.sent.clear()
        self.assertEqual(sweep(), {})
        self.assertEqual(self.sent, [])

    def test_a_queued_training_run_without_a_message_gets_one(self):
        subject = make_subject(self.team, self.editor, images=0)
        run = make_run(subject, self.project, self.editor, self.model)
        self.assertEqual(sweep(), {"training_wake_ups": 1})
        self.assertEqual(self.sent, [("training", run.pk)])

    def test_a_training_message_runs_the_oldest_queued_run_when_its_own_is_gone(self):
        subject = make_subject(self.team, self.editor, images=0)
        first = make_run(subject, self.project, self.editor, self.model)
        gone = make_run(subject, self.project, self.editor, self.model,
                        status=JobStatus.CANCELED)
        claimed_id, hold = training_claim(gone.pk)
        self.assertEqual(claimed_id, first.pk)
        self.assertTrue(hold.renew())
        self.assertEqual(training_claim(gone.pk), (None, None))


class SideEffectTests(SweeperTestCase):
    def image(self, age_s, **fields):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        image = make_image(job)
        Image.objects.filter(pk=image.pk).update(
            created_at=timezone.now() - timedelta(seconds=age_s), **fields
        )
        return image

    def test_lost_thumbnails_and_scans_are_sent_again(self):
        old = self.image(120)
        self.image(2)  # its messages may still be on their way
        done = sweep()
        self.assertEqual((done["thumbnails_resent"], done["scans_resent"]), (1, 1))
        self.assertEqual(sorted(self.sent), [("scan", old.pk), ("thumbnails", old.pk)])

    def test_not_while_the_queue_still_holds_messages(self):
        self.image(120)
        self.waiting.update(default=5, moderation=1)
        self.assertEqual(sweep(), {})

    def test_images_that_have_them_are_left_alone(self):
        self.image(120, thumbnails={"256": "t.webp", "512": "u.webp"})
        self.assertEqual(sweep(), {"scans_resent": 1})


class StuckStateTests(StudioTestCase):
    def test_the_owner_cancels_a_job_whose_worker_died_at_once(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.RUNNING,
                       claims=1, **LAPSED)
        with mock.patch("generation.services.publish") as publish:
            self.assertTrue(job_cancel(job=job, user=self.editor))
        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.CANCELED)
        self.assertIn("its worker had stopped", job.error)
        self.assertEqual(publish.call_args.args[1]["type"], "job.canceled")
        self.assertTrue(job.may_retry(self.editor))

    def test_a_job_whose_message_could_not_be_sent_stays_queued(self):
        job = make_job(self.project, self.editor, self.model)
        with mock.patch("generation.services.enqueue_generation",
                        side_effect=ConnectionError("broker down")), \
                mock.patch("generation.services.publish"):
            job_dispatch(job)
        job.refresh_from_db()
        self.assertEqual(job.status, JobStatus.QUEUED)

    def test_a_database_outage_in_a_task_is_retried_not_acked(self):
        for task, runner in [(run_generation_job, "generation.execution.job_execute"),
                             (run_training, "generation.training.execution.training_execute")]:
            with mock.patch(runner, side_effect=OperationalError("server closed the connection")), \
                    mock.patch.object(task, "retry", side_effect=Retry()) as retry:
                task.apply(args=[1])
            retry.assert_called_once()

    def test_a_database_outage_midway_never_marks_the_job_failed(self):
        job = make_job(self.project, self.editor, self.model)
        with mock.patch("generation.execution.generate_all",
                        side_effect=OperationalError("terminating connection")), \
                mock.patch("generation.execution.publish"):
            from generation.execution import job_execute

            with self.assertRaises(OperationalError):
                job_execute(job_id=job.pk)
        job.refresh_from_db()
        self.assertEqual((job.status, job.error), (JobStatus.RUNNING, ""))


class EmbeddedWaitingTests(StudioTestCase):
    def test_waiting_counts_tasks_not_started_per_pool(self):
        import threading

        from studio import embedded_worker

        release = threading.Event()
        started = threading.Event()

        class Blocking:
            name = "blocking"

            def run(self):
                started.set()
                release.wait(10)

        first = embedded_worker.submit("default", Blocking())
        started.wait(10)
        second = embedded_worker.submit("default", Blocking())
        self.assertEqual(embedded_worker.waiting("default"), 1)
        self.assertEqual(embedded_worker.waiting("gpu"), 0)
        release.set()
        first.result(10), second.result(10)
        self.assertEqual(embedded_worker.waiting("default"), 0)
