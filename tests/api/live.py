"""The live test server for the APIs that wait for their jobs (A1111's, OpenAI's), with a
stand-in GPU worker: a queued job is finished at once with plain images written by the
studio's own image writer (PNG with its A1111 infotext), so a request's wait ends."""

from contextlib import ExitStack
from unittest import mock

from django.db import transaction
from django.test import LiveServerTestCase, override_settings
from django.utils import timezone
from PIL import Image as PILImage

from gallery.services import image_create_from_generation
from generation.models import GenerationJob, JobStatus
from gpu_workers.requests import GenerationResult
from gpu_workers.samplers import SAMPLERS
from studio.accounts.models import Role
from studio.api.tokens import token_create
from tests.base import StudioTestCase


def finish_job(job_id):
    """What a worker leaves behind for a job: batch_size images, the job finished."""
    job = GenerationJob.objects.select_related("model", "project").get(pk=job_id)
    sampler = SAMPLERS[job.sampler or "Euler"]  # empty: the model's own, Euler here
    with transaction.atomic():
        for index in range(job.batch_size):
            result = GenerationResult(
                images=[], seed=job.seed + index, sampler=sampler.infotext_name,
                schedule_type=sampler.schedule_type, scheduler_class=sampler.scheduler_class,
                scheduler_config={}, elapsed_s=0.1, variation_seed=job.variation_seed,
            )
            image_create_from_generation(
                job=job, pil_image=PILImage.new("RGB", (job.width, job.height), (90, 40, 200)),
                result=result,
            )
        GenerationJob.objects.filter(pk=job.pk).update(
            status=JobStatus.FINISHED, started_at=timezone.now(), finished_at=timezone.now()
        )


# A stand-in worker that failed would leave a request waiting the default ten minutes.
@override_settings(STUDIO_API_WAIT_SECONDS=10)
class LiveApiTestCase(LiveServerTestCase):
    """StudioTestCase's team, members and model behind a live server; `worker` is the
    stand-in worker's mock (replace its side_effect to keep jobs queued)."""

    password = StudioTestCase.password

    def setUp(self):
        StudioTestCase.setUpTestData.__func__(type(self))
        stack = ExitStack()
        self.addCleanup(stack.close)
        self.worker = stack.enter_context(
            mock.patch("generation.services.enqueue_generation", side_effect=finish_job)
        )
        # Thumbnails and scans are other workers' business.
        stack.enter_context(mock.patch("gallery.services.image_thumbnails_schedule"))
        stack.enter_context(mock.patch("studio.moderation.scanning.image_scan_schedule"))

    def token(self, user, *, team=None, role=None, projects=()):
        team = team or (self.other_team if user == self.outsider else self.team)
        role = role or team.role_of(user) or Role.VIEWER
        return token_create(user=user, team=team, name="test", role=role, days=30,
                            projects=projects)[1]
