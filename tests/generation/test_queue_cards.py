"""Queue cards say who queued a job, how, with which LoRAs, how long it took and how fast,
and when a waiting or running job should be done; recent times read "just now"."""

from datetime import timedelta

from django.template import Context, Template
from django.test import SimpleTestCase
from django.urls import reverse
from django.utils import timezone

from generation.loras.models import JobLora
from generation.models import GenerationJob, JobMode, JobStatus
from studio.quotas.models import WorkerReport
from tests.base import StudioTestCase, make_job


class TimeFiltersTests(SimpleTestCase):
    def render(self, source, **context):
        return Template(source).render(Context(context))

    def test_under_a_minute_is_just_now(self):
        now = timezone.now()
        self.assertEqual(self.render("{{ t|ago }}", t=now - timedelta(seconds=20)), "just now")
        self.assertEqual(self.render("{{ t|ago:now }}", t=now, now=now), "just now")

    def test_older_times_say_how_long_ago(self):
        now = timezone.now()
        three_minutes_ago = now - timedelta(minutes=3)
        self.assertEqual(
            self.render("{{ t|ago:now }}", t=three_minutes_ago, now=now), "3\xa0minutes ago"
        )
        self.assertEqual(self.render("{{ t|ago }}", t=None), "")

    def test_durations_read_as_people_say_them(self):
        for seconds, text in [(8.44, "8.4 s"), (42.4, "42 s"), (125, "2 min 5 s"), (120, "2 min"),
                              (3780, "1 h 3 min")]:
            self.assertEqual(self.render("{{ s|duration }}", s=seconds), text)


class QueueCardTests(StudioTestCase):
    def jobs_html(self, user=None):
        self.client.force_login(user or self.editor)
        response = self.client.get(reverse("project_jobs", args=[self.project.pk]))
        self.assertEqual(response.status_code, 200)
        return response.content.decode()

    def test_a_card_names_who_queued_it_its_mode_and_loras(self):
        job = make_job(self.project, self.admin, self.model, mode=JobMode.IMG2IMG)
        JobLora.objects.create(job=job, name="inkwash", sha256="a" * 64, weight=0.8, position=0)
        JobLora.objects.create(job=job, name="paper", sha256="b" * 64, weight=-1, position=1)
        html = self.jobs_html()
        self.assertIn("bob · Image to image · inkwash&nbsp;0.8, paper&nbsp;-1", html)

    def test_a_finished_card_says_how_long_it_took_and_its_speed(self):
        started = timezone.now() - timedelta(minutes=5)
        make_job(
            self.project, self.editor, self.model, steps=20, status=JobStatus.FINISHED,
            progress_step=20, created_at=started, started_at=started,
            finished_at=started + timedelta(seconds=8),
        )
        html = self.jobs_html()
        self.assertIn("seed 42 · took 8.0 s · 2.50 it/s", html)
        self.assertIn("5\xa0minutes ago", html)
        self.assertNotIn("data-job-eta", html)

    def test_a_failed_card_has_no_speed(self):
        started = timezone.now() - timedelta(minutes=5)
        make_job(
            self.project, self.editor, self.model, steps=20, status=JobStatus.FAILED,
            started_at=started, finished_at=started + timedelta(seconds=1),
        )
        html = self.jobs_html()
        self.assertNotIn("it/s", html)
        self.assertNotIn("took", html)

    def test_a_new_job_was_queued_just_now(self):
        make_job(self.project, self.editor, self.model)
        html = self.jobs_html()
        self.assertIn("just now", html)
        self.assertNotIn("0 minutes ago", html)

    def test_waiting_jobs_are_done_after_the_work_ahead_at_the_measured_speed(self):
        # 1024×1024, 20 steps: (20 + 2 decode) × 1.048576 MP-steps at 0.5 s each ≈ 11.5 s.
        WorkerReport.objects.create(worker="gpu:1", step_seconds={self.model.family: 0.5})
        size = {"width": 1024, "height": 1024, "steps": 20}
        running = make_job(
            self.project, self.admin, self.model, status=JobStatus.RUNNING, progress_step=10,
            started_at=timezone.now(), **size,
        )
        first = make_job(self.project, self.editor, self.model, **size)
        second = make_job(self.project, self.editor, self.model, **size)
        html = self.jobs_html()
        self.assertIn(f'data-job-id="{running.pk}"', html)
        etas = {
            job.pk: html.split(f'data-job-id="{job.pk}"')[1].split("data-job-eta>")[1]
            .split("</p>")[0]
            for job in (running, first, second)
        }
        self.assertEqual(etas[running.pk], "Done in about 5.8 s")  # half its steps are left
        self.assertEqual(etas[first.pk], "Done in about 17 s")
        self.assertEqual(etas[second.pk], "Done in about 29 s")

    def test_more_workers_share_the_work_ahead(self):
        for name in ("gpu:1", "gpu:2"):
            WorkerReport.objects.create(worker=name, step_seconds={self.model.family: 0.5})
        make_job(self.project, self.editor, self.model, width=1024, height=1024, steps=20)
        make_job(self.project, self.owner, self.model, width=1024, height=1024, steps=20)
        html = self.jobs_html()
        self.assertIn("Done in about 5.8 s", html)
        self.assertIn("Done in about 12 s", html)

    def test_other_users_cant_see_the_cards(self):
        make_job(self.project, self.admin, self.model)
        self.client.force_login(self.outsider)
        response = self.client.get(reverse("project_jobs", args=[self.project.pk]))
        self.assertEqual(response.status_code, 404)
        self.assertEqual(GenerationJob.objects.count(), 1)
