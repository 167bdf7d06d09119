"""`manage.py jobs_doctor` reports stuck or inconsistent jobs, runs and images, and only
reports: it changes nothing and exits 1 when it found something."""

import io
import json
from datetime import timedelta

from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from gallery.models import Image
from generation.models import GenerationJob, JobStatus
from generation.training.models import TrainingRun
from studio.moderation.models import ImageScan, ScanDecision
from tests.base import StudioTestCase, make_image, make_job
from tests.subject_builders import make_run, make_subject


def ago(**delta):
    return timezone.now() - timedelta(**delta)


@override_settings(STUDIO_JOB_MAX_ATTEMPTS=3, STUDIO_DELETE_UNDO_SECONDS=24 * 3600)
class JobsDoctorTests(StudioTestCase):
    def doctor(self, *args):
        """(exit code, stdout)."""
        out = io.StringIO()
        try:
            call_command("jobs_doctor", *args, stdout=out)
        except CommandError as error:
            return error.returncode, out.getvalue()
        return 0, out.getvalue()

    def doctor_json(self, *args):
        code, out = self.doctor("--json", *args)
        return code, json.loads(out)

    def found(self, *args):
        """{(check, kind, id)} reported."""
        _, report = self.doctor_json(*args)
        return {(item["check"], item["kind"], item["id"]) for item in report["findings"]}

    def job(self, **fields):
        return make_job(self.project, self.editor, self.model, **fields)

    def finished_job_with_image(self, *, thumbnails=True, scan=True, made=None):
        job = self.job(status=JobStatus.FINISHED, finished_at=made or ago(hours=1))
        image = make_image(job)
        Image.objects.filter(pk=image.pk).update(
            created_at=made or ago(hours=1),
            thumbnails={"256": "t/a.webp", "512": "t/b.webp"} if thumbnails else {},
        )
        if scan:
            ImageScan.objects.create(image=image, scanner="none", decision=ScanDecision.PASS)
        return job, image

    def test_all_well(self):
        self.job()  # just queued
        self.job(status=JobStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(minutes=1))
        self.finished_job_with_image()
        code, out = self.doctor()
        self.assertEqual(code, 0)
        self.assertIn("No stuck or inconsistent jobs found.", out)
        self.assertEqual(self.doctor_json(), (0, {"counts": {}, "findings": []}))

    def test_lapsed_lease(self):
        lapsed = self.job(status=JobStatus.RUNNING, lease_expires_at=ago(minutes=10),
                          worker="gpu-1", attempts=1)
        no_lease = self.job(status=JobStatus.RUNNING)
        # The sweeper has a few minutes to take a lease back before it counts.
        self.job(status=JobStatus.RUNNING, lease_expires_at=ago(minutes=1))
        code, report = self.doctor_json()
        self.assertEqual(code, 1)
        self.assertEqual(report["counts"], {"lease_lapsed": 2})
        by_id = {item["id"]: item for item in report["findings"]}
        self.assertEqual(set(by_id), {lapsed.pk, no_lease.pk})
        self.assertIn("running on gpu-1, lease lapsed at", by_id[lapsed.pk]["detail"])
        self.assertIn("attempt 1 of 3", by_id[lapsed.pk]["detail"])
        self.assertIn("lease never set", by_id[no_lease.pk]["detail"])

    def test_queued_too_long(self):
        old = self.job()
        GenerationJob.objects.filter(pk=old.pk).update(created_at=ago(minutes=45))
        self.job()
        self.assertEqual(self.found(), {("queued_too_long", "job", old.pk)})
        self.assertEqual(self.found("--queued-minutes", "60"), set())

    def test_out_of_attempts_but_not_failed(self):
        queued = self.job(attempts=3)
        over = self.job(status=JobStatus.RUNNING, attempts=4,
                        lease_expires_at=timezone.now() + timedelta(minutes=1))
        # Its last allowed attempt, running with a live lease: normal.
        self.job(status=JobStatus.RUNNING, attempts=3,
                 lease_expires_at=timezone.now() + timedelta(minutes=1))
        self.job(status=JobStatus.FAILED, attempts=3)
        self.assertEqual(
            self.found(),
            {("out_of_attempts", "job", queued.pk), ("out_of_attempts", "job", over.pk)},
        )

    def test_finished_without_images(self):
        empty = self.job(status=JobStatus.FINISHED, finished_at=ago(hours=2))
        # A deleted image is still a row within the undo window: it was saved.
        _, image = self.finished_job_with_image()
        Image.all_objects.filter(pk=image.pk).update(deleted_at=timezone.now())
        # Past the undo window its images may have been purged: not judged.
        self.job(status=JobStatus.FINISHED, finished_at=ago(days=2))
        # Just finished: its images may still be on their way.
        self.job(status=JobStatus.FINISHED, finished_at=ago(minutes=1))
        self.assertEqual(self.found(), {("finished_without_images", "job", empty.pk)})

    def test_images_without_thumbnails_or_scan(self):
        _, bare = self.finished_job_with_image(thumbnails=False, scan=False)
        _, half = self.finished_job_with_image()
        Image.objects.filter(pk=half.pk).update(thumbnails={"256": "t/c.webp"})
        # Made a minute ago: the CPU queue is still at it.
        self.finished_job_with_image(thumbnails=False, scan=False, made=ago(minutes=1))
        code, report = self.doctor_json()
        self.assertEqual(code, 1)
        self.assertEqual(
            report["counts"], {"image_without_thumbnails": 2, "image_without_scan": 1}
        )
        details = {(item["check"], item["id"]): item["detail"] for item in report["findings"]}
        self.assertIn("missing sizes 256, 512", details[("image_without_thumbnails", bare.pk)])
        self.assertIn("missing sizes 512", details[("image_without_thumbnails", half.pk)])
        self.assertIn(("image_without_scan", bare.pk), details)

    def test_training_runs(self):
        subject = make_subject(self.team, self.editor, images=0)

        def run(**fields):
            return make_run(subject, self.project, self.editor, self.model, **fields)

        lapsed = run(status=JobStatus.RUNNING, lease_expires_at=ago(minutes=30))
        waiting = run()
        TrainingRun.objects.filter(pk=waiting.pk).update(created_at=ago(hours=2))
        spent = run(attempts=3)
        run(status=JobStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(minutes=5))
        self.assertEqual(
            self.found(),
            {
                ("lease_lapsed", "training_run", lapsed.pk),
                ("queued_too_long", "training_run", waiting.pk),
                ("out_of_attempts", "training_run", spent.pk),
            },
        )

    def test_text_report_and_limit(self):
        jobs = [self.job(attempts=3) for _ in range(3)]
        code, out = self.doctor("--limit", "2")
        self.assertEqual(code, 1)
        self.assertIn("out_of_attempts (3): at or over STUDIO_JOB_MAX_ATTEMPTS", out)
        self.assertIn(f"  job {jobs[0].pk}: queued after 3 attempts of 3", out)
        self.assertNotIn(f"job {jobs[2].pk}:", out)
        self.assertIn("  ... and 1 more", out)
        _, report = self.doctor_json("--limit", "2")
        self.assertEqual(report["counts"], {"out_of_attempts": 3})
        self.assertEqual(len(report["findings"]), 2)

    def test_changes_nothing(self):
        job = self.job(status=JobStatus.RUNNING, lease_expires_at=ago(hours=1), attempts=5)
        self.doctor()
        job.refresh_from_db()
        self.assertEqual((job.status, job.attempts), (JobStatus.RUNNING, 5))

    def test_bad_options_name_the_option(self):
        for option, value in (("--limit", "0"), ("--queued-minutes", "soon")):
            with self.subTest(option=option), self.assertRaises(CommandError) as raised:
                call_command("jobs_doctor", option, value)
            self.assertIn(f"argument {option}: invalid", str(raised.exception))
