"""/api/v1 jobs: create through the studio's form and services (same refusals), list with
filters and cursor pages, get, cancel, retry; Idempotency-Key; rate limits as 429."""

import base64
import io
from unittest import mock

from django.test import TransactionTestCase, override_settings
from PIL import Image as PILImage

from generation.models import GenerationJob, JobStatus
from studio.accounts.models import Role
from studio.api.tokens import token_create
from studio.moderation.models import Policy
from studio.quotas.models import TeamLimits
from tests.api.base import ApiTestCase
from tests.base import StudioTestCase, make_image, make_job


def png_base64(size=(64, 64), colour=(30, 120, 200)):
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class JobCreateTests(ApiTestCase):
    def setUp(self):
        self.secret = self.token(self.editor)
        self.path = f"/projects/{self.project.pk}/jobs"
        self.recipe = {
            "prompt": "a lighthouse at dusk",
            "negative_prompt": "blurry",
            "model": self.model.pk,
            "steps": 12,
            "guidance_scale": 6.5,
            "width": 128,
            "height": 64,
            "seed": 77,
        }

    def create(self, secret=None, headers=None, **overrides):
        return self.api(
            "post", self.path, secret or self.secret, json={**self.recipe, **overrides},
            headers=headers,
        )

    def test_queues_the_job_the_recipe_describes(self):
        response = self.create()
        self.assertEqual(response.status_code, 201, response.content)
        [body] = response.json()["jobs"]
        job = GenerationJob.objects.get()
        self.assertEqual(body["id"], job.pk)
        self.assertEqual((job.created_by, job.status), (self.editor, JobStatus.QUEUED))
        self.assertEqual((job.width, job.height, job.steps, job.seed), (128, 64, 12, 77))
        self.assertEqual((body["mode"], body["queue_position"]), ("txt2img", 1))

    def test_batch_count_queues_that_many_jobs_with_following_seeds(self):
        response = self.create(batch_count=3, batch_size=2)
        seeds = [job["seed"] for job in response.json()["jobs"]]
        self.assertEqual(seeds, [77, 79, 81])

    def test_img2img_from_a_base64_upload(self):
        response = self.create(source_upload=png_base64(), strength=0.5)
        self.assertEqual(response.status_code, 201, response.content)
        job = GenerationJob.objects.get()
        self.assertEqual(job.mode, "img2img")
        self.assertTrue(job.source_upload.name)

    def test_img2img_from_a_gallery_image_and_inpaint_with_a_mask(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        mask = png_base64(colour=(255, 255, 255))
        response = self.create(source_image=image.pk, mask=mask)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["jobs"][0]["mode"], "inpaint")

    def test_out_of_range_values_name_their_field(self):
        body = self.assert_problem(self.create(steps=100_000), 422, field="steps")
        self.assertIn("Steps", body["detail"])
        self.assert_problem(self.create(width=100), 422, field="width")
        self.assertFalse(GenerationJob.objects.exists())

    def test_wrong_types_unknown_and_missing_fields_name_the_field(self):
        self.assert_problem(self.create(steps="many"), 422, field="steps")
        self.assert_problem(self.create(cfg="7"), 422, field="cfg")
        recipe = dict(self.recipe)
        del recipe["prompt"]
        response = self.api("post", self.path, self.secret, json=recipe)
        self.assert_problem(response, 422, field="prompt")
        self.assertFalse(GenerationJob.objects.exists())

    def test_a_broken_upload_names_its_field(self):
        self.assert_problem(self.create(source_upload="not base64!"), 422, field="source_upload")
        not_an_image = base64.b64encode(b"hello").decode()
        self.assert_problem(self.create(source_upload=not_an_image), 422, field="source_upload")
        self.assert_problem(self.create(source_image=10**30), 422, field="source_image")
        self.assertFalse(GenerationJob.objects.exists())

    def test_an_unknown_model_or_another_teams_image_is_refused(self):
        self.assert_problem(self.create(model=999_999), 422, field="model")
        theirs = make_image(make_job(self.other_project, self.outsider, self.model))
        self.assert_problem(self.create(source_image=theirs.pk), 422, field="source_image")

    def test_the_prompt_policy_refuses_as_in_the_studio(self):
        Policy.objects.create(team=self.team, blocked_terms="clown")
        body = self.assert_problem(self.create(prompt="a sad clown"), 422, field="prompt")
        self.assertIn("clown", body["detail"])
        self.assertFalse(GenerationJob.objects.exists())

    def test_a_quota_refuses_with_429_and_retry_after(self):
        TeamLimits.objects.create(team=self.team, max_active_images=2)
        response = self.create(batch_size=3)
        self.assert_problem(response, 429)
        self.assertIn("Retry-After", response)
        self.assertFalse(GenerationJob.objects.exists())

    @override_settings(STUDIO_GENERATE_POSTS_PER_MINUTE=2)
    def test_the_generate_rate_limit_answers_429_with_retry_after(self):
        self.assertEqual(self.create().status_code, 201)
        self.assertEqual(self.create().status_code, 201)
        response = self.create()
        self.assert_problem(response, 429)
        self.assertGreater(int(response["Retry-After"]), 0)
        self.assertEqual(GenerationJob.objects.count(), 2)

    def test_viewers_get_403_and_other_teams_404(self):
        self.assert_problem(self.create(self.token(self.viewer)), 403)
        self.assert_problem(self.create(self.token(self.outsider)), 404)
        self.assertFalse(GenerationJob.objects.exists())

    def test_a_revoked_or_expired_token_is_refused(self):
        from datetime import timedelta

        from django.utils import timezone

        from studio.api.models import ApiToken

        ApiToken.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
        self.assert_problem(self.create(), 401)
        self.assertFalse(GenerationJob.objects.exists())


class JobCreateQueryTests(TransactionTestCase):
    """The queries of one job creation, committed as in production (not in a test's
    transaction, where the answer would read the queue before the announcement does), as
    bench/api.py counts them. A query that comes back fails here."""

    password = StudioTestCase.password

    def setUp(self):
        StudioTestCase.setUpTestData.__func__(type(self))
        self.secret = token_create(user=self.editor, team=self.team, name="test",
                                   role=Role.EDITOR, days=1)[1]
        make_job(self.project, self.admin, self.model)  # someone else's job waits ahead

    def create(self):
        return self.client.post(
            f"/api/v1/projects/{self.project.pk}/jobs",
            {"prompt": "a red fox in the snow", "model": self.model.pk, "steps": 20},
            content_type="application/json", headers={"Authorization": f"Bearer {self.secret}"},
        )

    def test_a_job_creation_costs_nine_queries(self):
        # The token, the project with the caller's role; the model (with the team's setting for
        # it), read once for its defaults and the checks; the suspension and the prompt
        # policies, screened once (by the job service); the team's limits and budget with the
        # caller's queued and recent images (one); the INSERT; the queue's order (two), for
        # the place in line announced and answered.
        with mock.patch("generation.services.enqueue_generation") as enqueue:
            self.create()  # the token's first use records it (once a minute)
            with self.assertNumQueries(9):
                response = self.create()
        self.assertEqual(response.status_code, 201, response.content)
        [job] = response.json()["jobs"]
        self.assertEqual((job["status"], job["queue_position"]), ("queued", 3))
        enqueue.assert_called_with(job["id"])


class IdempotencyTests(ApiTestCase):
    def setUp(self):
        self.secret = self.token(self.editor)
        self.path = f"/projects/{self.project.pk}/jobs"
        self.recipe = {"prompt": "a fox", "model": self.model.pk, "steps": 4,
                       "width": 64, "height": 64}

    def create(self, key, **overrides):
        return self.api(
            "post", self.path, self.secret, json={**self.recipe, **overrides},
            headers={"Idempotency-Key": key},
        )

    def test_a_retried_request_does_not_queue_twice(self):
        first = self.create("abc")
        second = self.create("abc")
        self.assertEqual((first.status_code, second.status_code), (201, 201))
        self.assertEqual(first.json()["jobs"][0]["id"], second.json()["jobs"][0]["id"])
        self.assertEqual(GenerationJob.objects.count(), 1)
        self.create("another")
        self.assertEqual(GenerationJob.objects.count(), 2)

    def test_a_key_reused_with_another_body_is_refused(self):
        self.create("abc")
        self.assert_problem(self.create("abc", prompt="a wolf"), 422, field="Idempotency-Key")
        self.assertEqual(GenerationJob.objects.count(), 1)

    def test_a_refused_request_frees_its_key(self):
        self.assert_problem(self.create("abc", steps=0), 422, field="steps")
        self.assertEqual(self.create("abc").status_code, 201)

    def test_keys_are_per_user(self):
        self.create("abc")
        other = self.api(
            "post", self.path, self.token(self.owner), json=self.recipe,
            headers={"Idempotency-Key": "abc"},
        )
        self.assertEqual(other.status_code, 201)
        self.assertEqual(GenerationJob.objects.count(), 2)


class JobReadTests(ApiTestCase):
    def setUp(self):
        self.secret = self.token(self.viewer)
        self.jobs = [make_job(self.project, self.editor, self.model, prompt=f"p{n}")
                     for n in range(5)]
        self.theirs = make_job(self.other_project, self.outsider, self.model)

    def test_lists_newest_first_in_cursor_pages(self):
        first = self.api("get", "/jobs?limit=2", self.secret).json()
        ids = [job["id"] for job in first["items"]]
        self.assertEqual(ids, [self.jobs[4].pk, self.jobs[3].pk])
        second = self.api("get", f"/jobs?limit=2&cursor={first['next_cursor']}", self.secret)
        third = self.api(
            "get", f"/jobs?limit=2&cursor={second.json()['next_cursor']}", self.secret
        ).json()
        self.assertEqual([job["id"] for job in third["items"]], [self.jobs[0].pk])
        self.assertIsNone(third["next_cursor"])

    def test_filters(self):
        GenerationJob.objects.filter(pk=self.jobs[0].pk).update(status=JobStatus.FAILED)
        failed = self.api("get", "/jobs?status=failed", self.secret).json()["items"]
        self.assertEqual([job["id"] for job in failed], [self.jobs[0].pk])
        both = self.api("get", "/jobs?status=failed&status=queued", self.secret).json()
        self.assertEqual(len(both["items"]), 5)
        mine = self.api("get", "/jobs?mine=true", self.secret).json()["items"]
        self.assertEqual(mine, [])

    def test_bad_filters_name_the_field(self):
        self.assert_problem(self.api("get", "/jobs?status=lost", self.secret), 422, "status.0")
        self.assert_problem(self.api("get", "/jobs?limit=1000", self.secret), 422, "limit")
        self.assert_problem(self.api("get", "/jobs?cursor=abc", self.secret), 422, "cursor")

    def test_other_teams_jobs_are_neither_listed_nor_readable(self):
        listed = [job["id"] for job in self.api("get", "/jobs", self.secret).json()["items"]]
        self.assertNotIn(self.theirs.pk, listed)
        self.assert_problem(self.api("get", f"/jobs/{self.theirs.pk}", self.secret), 404)
        self.assert_problem(self.api("get", f"/jobs/{10**20}", self.secret), 404)

    def test_get_has_progress_and_images(self):
        image = make_image(self.jobs[0])
        body = self.api("get", f"/jobs/{self.jobs[0].pk}", self.secret).json()
        self.assertEqual(body["image_ids"], [image.pk])
        self.assertEqual(body["total_steps"], 4)


class JobCancelRetryTests(ApiTestCase):
    def setUp(self):
        self.job = make_job(self.project, self.editor, self.model)

    def test_the_author_cancels_a_queued_job(self):
        response = self.api("post", f"/jobs/{self.job.pk}/cancel", self.token(self.editor))
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["status"], "canceled")
        self.assert_problem(
            self.api("post", f"/jobs/{self.job.pk}/cancel", self.token(self.editor)), 409
        )

    def test_another_editor_may_not_cancel_and_outsiders_get_404(self):
        self.assertEqual(self.editor.memberships.get().role, Role.EDITOR)
        other_editor = self.viewer
        other_editor.memberships.update(role=Role.EDITOR)
        self.assert_problem(
            self.api("post", f"/jobs/{self.job.pk}/cancel", self.token(other_editor)), 403
        )
        self.assert_problem(
            self.api("post", f"/jobs/{self.job.pk}/cancel", self.token(self.outsider)), 404
        )
        self.job.refresh_from_db()
        self.assertEqual(self.job.status, JobStatus.QUEUED)

    def test_an_admin_token_with_a_viewer_role_may_not_cancel_others_jobs(self):
        secret = self.token(self.admin, role=Role.VIEWER)
        self.assert_problem(self.api("post", f"/jobs/{self.job.pk}/cancel", secret), 403)
        secret = self.token(self.admin)
        self.assertEqual(self.api("post", f"/jobs/{self.job.pk}/cancel", secret).status_code, 200)

    def test_retry_queues_a_failed_job_again(self):
        GenerationJob.objects.filter(pk=self.job.pk).update(status=JobStatus.FAILED)
        response = self.api("post", f"/jobs/{self.job.pk}/retry", self.token(self.editor))
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["seed"], self.job.seed)
        self.assertEqual(GenerationJob.objects.count(), 2)

    def test_retry_of_a_queued_job_is_a_conflict_and_viewers_403(self):
        self.assert_problem(
            self.api("post", f"/jobs/{self.job.pk}/retry", self.token(self.editor)), 409
        )
        GenerationJob.objects.filter(pk=self.job.pk).update(status=JobStatus.FAILED)
        self.assert_problem(
            self.api("post", f"/jobs/{self.job.pk}/retry", self.token(self.viewer)), 403
        )
        self.assert_problem(
            self.api("post", f"/jobs/{self.job.pk}/retry", self.token(self.outsider)), 404
        )
        self.assertEqual(GenerationJob.objects.count(), 1)
