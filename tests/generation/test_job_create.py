from unittest import mock

from django.urls import reverse

from generation.models import GenerationJob, JobStatus
from tests.base import StudioTestCase


class JobCreateTestCase(StudioTestCase):
    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse at dusk, oil painting",
            "negative_prompt": "blurry",
            "model": self.model.pk,
            "steps": 20,
            "guidance_scale": 7.5,
            "width": 512,
            "height": 384,
            "seed": 1234,
        }

    def post(self, **overrides):
        data = {**self.params, **overrides}
        with mock.patch("generation.services.enqueue_generation") as enqueue:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(self.url, data, headers={"HX-Request": "true"})
        return response, enqueue

    def test_creates_a_queued_job_and_dispatches_it_on_commit(self):
        response, enqueue = self.post()
        self.assertEqual(response.status_code, 200)
        job = GenerationJob.objects.get()
        self.assertEqual(job.status, JobStatus.QUEUED)
        self.assertEqual(job.created_by, self.editor)
        self.assertEqual((job.width, job.height, job.steps, job.seed), (512, 384, 20, 1234))
        self.assertEqual(job.negative_prompt, "blurry")
        enqueue.assert_called_once_with(job.pk)
        # The response redraws the queue with the new job in it; the form stays as it is.
        self.assertContains(response, f'data-job-id="{job.pk}"')
        self.assertEqual(response["HX-Reswap"], "none")
        self.assertNotContains(response, 'id="generate-form"')

    def test_an_empty_seed_is_chosen_and_recorded(self):
        self.post(seed="")
        job = GenerationJob.objects.get()
        self.assertGreaterEqual(job.seed, 0)
        self.assertLess(job.seed, 2**32)

    def test_a_plain_form_post_redirects_to_the_studio(self):
        with mock.patch("generation.services.enqueue_generation"):
            response = self.client.post(self.url, self.params)
        self.assertRedirects(response, reverse("project_studio", args=[self.project.pk]))

    def assert_refused(self, field, message_part, **overrides):
        response, enqueue = self.post(**overrides)
        self.assertEqual(response.status_code, 422)
        errors = response.context["form"].errors
        self.assertIn(field, errors)
        self.assertIn(message_part, " ".join(errors[field]))
        self.assertContains(response, message_part, status_code=422)
        self.assertFalse(GenerationJob.objects.exists())
        enqueue.assert_not_called()

    def test_empty_prompt(self):
        self.assert_refused("prompt", "Write a prompt", prompt="")

    def test_blank_prompt(self):
        self.assert_refused("prompt", "Write a prompt", prompt="   \n ")

    def test_zero_steps(self):
        self.assert_refused("steps", "Steps must be from 1 to 150.", steps=0)

    def test_too_many_steps(self):
        self.assert_refused("steps", "Steps must be from 1 to 150.", steps=1000)

    def test_steps_not_a_number(self):
        self.assert_refused("steps", "Steps must be a whole number from 1 to 150.", steps="many")

    def test_width_not_a_multiple_of_8(self):
        self.assert_refused("width", "multiple of 8 (try 512 or 520)", width=513)

    def test_height_not_a_multiple_of_8(self):
        self.assert_refused("height", "multiple of 8", height=100)

    def test_size_too_large(self):
        self.assert_refused("height", "too large", width=2048, height=2048)

    def test_side_out_of_range(self):
        self.assert_refused("width", "Width must be from 64 to 2048.", width=4096)

    def test_unknown_model(self):
        self.assert_refused("model", "Unknown model", model=999999)

    def test_disabled_model(self):
        self.model.is_enabled = False
        self.model.save()
        self.assert_refused("model", "it is switched off in the model library")

    def test_negative_seed(self):
        self.assert_refused("seed", "Seed must be from 0 to 18446744073709551615.", seed=-2)

    def test_unknown_sampler(self):
        self.assert_refused("sampler", "Unknown sampler Karras: choose one from the list (Euler,",
                            sampler="Karras")

    def test_a_chosen_sampler_is_recorded(self):
        self.post(sampler="DPM++ SDE Karras")
        self.assertEqual(GenerationJob.objects.get().sampler, "DPM++ SDE Karras")

    def test_batch_size_out_of_range(self):
        self.assert_refused("batch_size", "Batch size must be from 1 to 8.", batch_size=9)

    def test_batch_count_out_of_range(self):
        self.assert_refused("batch_count", "Batch count must be from 1 to 16.", batch_count=0)

    def test_clip_skip_out_of_range(self):
        self.assert_refused("clip_skip", "Clip skip must be from 1 to 12.", clip_skip=13)

    def test_batch_count_queues_that_many_jobs_with_following_seeds(self):
        response, enqueue = self.post(batch_count=3, batch_size=2, seed=100, clip_skip=2)
        self.assertEqual(response.status_code, 200)
        jobs = GenerationJob.objects.order_by("pk")
        self.assertEqual([job.seed for job in jobs], [100, 102, 104])
        self.assertEqual({(job.batch_size, job.clip_skip) for job in jobs}, {(2, 2)})
        self.assertEqual(enqueue.call_count, 3)

    def test_hires_fix_is_recorded_only_when_switched_on(self):
        self.post(hires_scale=1.5, hires_steps=10)
        self.post(hires_fix="on", hires_scale=1.5, hires_steps=10, hires_strength=0.4)
        off, on = GenerationJob.objects.order_by("pk")
        self.assertEqual(off.hires_scale, 1.0)
        self.assertEqual((on.hires_scale, on.hires_steps, on.hires_strength), (1.5, 10, 0.4))
        self.assertEqual(on.hires_size(), (768, 576))

    def test_hires_fix_beyond_the_pixel_limit(self):
        self.assert_refused("hires_scale", "512x384 upscaled by 4 is 2048x1536",
                            hires_fix="on", hires_scale=4)

    def test_hires_fix_that_runs_no_step(self):
        self.assert_refused("hires_strength", "the hires pass runs no step",
                            hires_fix="on", hires_steps=2, hires_strength=0.2)

    def test_guidance_out_of_range(self):
        self.assert_refused("guidance_scale", "CFG scale must be from 0 to 30.", guidance_scale=99)

    def test_viewer_cannot_generate(self):
        self.client.force_login(self.viewer)
        response, enqueue = self.post()
        self.assertEqual(response.status_code, 403)
        self.assertFalse(GenerationJob.objects.exists())
        enqueue.assert_not_called()

    def test_outsider_gets_404(self):
        self.client.force_login(self.outsider)
        response, _ = self.post()
        self.assertEqual(response.status_code, 404)
        self.assertFalse(GenerationJob.objects.exists())


class JobDispatchTestCase(StudioTestCase):
    def test_an_unreachable_queue_keeps_the_job_queued_for_the_sweeper(self):
        self.client.force_login(self.editor)
        data = {"prompt": "a fox", "model": self.model.pk, "steps": 4, "guidance_scale": 7,
                "width": 64, "height": 64}
        with mock.patch("generation.services.enqueue_generation",
                        side_effect=ConnectionError("redis down")):
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(reverse("job_create", args=[self.project.pk]), data)
        self.assertEqual(response.status_code, 302)
        job = GenerationJob.objects.get()
        self.assertEqual((job.status, job.error), (JobStatus.QUEUED, ""))

    def test_members_are_told_a_job_is_queued(self):
        self.client.force_login(self.editor)
        data = {"prompt": "a fox", "model": self.model.pk, "steps": 4, "guidance_scale": 7,
                "width": 64, "height": 64}
        with mock.patch("generation.services.enqueue_generation"), \
                mock.patch("generation.services.publish") as publish:
            with self.captureOnCommitCallbacks(execute=True):
                self.client.post(reverse("job_create", args=[self.project.pk]), data)
        group, payload = publish.call_args.args
        self.assertEqual(group, self.project.events_group())
        self.assertEqual(payload["type"], "job.queued")
        self.assertEqual(payload["position"], 1)
