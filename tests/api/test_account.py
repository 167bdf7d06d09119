"""/api/v1 account routes: the caller's usage and limits, prompt history, collections and
LoRA training runs; other teams' rows are 404, bad input a 4xx naming the field."""

from unittest import mock

from gallery.collections.models import Collection, CollectionVisibility
from generation.models import DiffusionModel, JobStatus, PromptFavourite
from generation.training.models import TrainingRun
from gpu_workers.training_plan import FLOW_PRESETS
from studio.accounts.models import Project
from studio.quotas.models import TeamBudget, TeamLimits
from tests.api.base import ApiTestCase
from tests.base import make_image, make_job
from tests.subject_builders import make_run, make_subject


class UsageTests(ApiTestCase):
    def test_the_callers_images_against_the_teams_limits_and_budgets(self):
        TeamLimits.objects.create(team=self.team, max_active_images=5, images_per_hour=40)
        TeamBudget.objects.create(team=self.team, daily_gpu_seconds=3600)
        make_job(self.project, self.editor, self.model, batch_size=2)
        make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        make_job(self.project, self.owner, self.model, batch_size=4)
        body = self.api("get", f"/teams/{self.team.pk}/usage", self.token(self.editor)).json()
        self.assertEqual(body["team_id"], self.team.pk)
        self.assertEqual(body["limits"]["max_active_images"], 5)
        self.assertEqual(body["limits"]["images_per_hour"], 40)
        self.assertEqual((body["active_images"], body["images_last_hour"]), (2, 3))
        [budget] = body["budgets"]
        self.assertEqual((budget["period"], budget["limit_gpu_seconds"]), ("day", 3600))
        self.assertEqual(budget["used_gpu_seconds"], 0)

    def test_other_teams_usage_is_404(self):
        path = f"/teams/{self.team.pk}/usage"
        self.assert_problem(self.api("get", path, self.token(self.outsider)), 404)
        secret = self.token(self.editor)
        self.assert_problem(self.api("get", "/teams/99999999999999999999/usage", secret), 404)
        self.assert_problem(self.api("get", "/teams/first/usage", secret), 422, "team_id")


class PromptHistoryTests(ApiTestCase):
    def setUp(self):
        self.lighthouse = make_job(self.project, self.editor, self.model)
        make_image(self.lighthouse)
        make_job(self.project, self.editor, self.model, prompt="a fox in snow")
        make_job(self.project, self.owner, self.model, prompt="the owner's prompt")

    def prompts(self, query="", secret=None):
        response = self.api("get", f"/prompts{query}", secret or self.token(self.editor))
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()

    def test_the_callers_prompts_newest_first_with_their_images(self):
        body = self.prompts()
        self.assertEqual([item["prompt"] for item in body["items"]],
                         ["a fox in snow", "a lighthouse at dusk"])
        lighthouse = body["items"][1]
        self.assertEqual(lighthouse["latest_job_id"], self.lighthouse.pk)
        self.assertEqual(len(lighthouse["image_ids"]), 1)
        self.assertEqual((lighthouse["model"], lighthouse["runs"]), ("tiny-sd15", 1))
        self.assertIsNone(body["next_page"])

    def test_search_favourites_and_project_filters(self):
        self.assertEqual([item["prompt"] for item in self.prompts("?q=fox")["items"]],
                         ["a fox in snow"])
        PromptFavourite.objects.create(user=self.editor, prompt="a lighthouse at dusk")
        favourites = self.prompts("?favourites=true")["items"]
        self.assertEqual([(item["prompt"], item["favourite"]) for item in favourites],
                         [("a lighthouse at dusk", True)])
        elsewhere = Project.objects.create(team=self.team, name="Elsewhere")
        self.assertEqual(self.prompts(f"?project={elsewhere.pk}")["items"], [])

    def test_a_project_scoped_token_sees_only_its_projects_prompts(self):
        covers = Project.objects.create(team=self.team, name="Covers")
        make_job(covers, self.editor, self.model, prompt="a book cover")
        secret = self.token(self.editor, projects=[covers])
        self.assertEqual([item["prompt"] for item in self.prompts(secret=secret)["items"]],
                         ["a book cover"])

    def test_other_teams_project_is_404_and_bad_filters_name_the_field(self):
        secret = self.token(self.outsider)
        self.assert_problem(self.api("get", f"/prompts?project={self.project.pk}", secret), 404)
        self.assertEqual(self.prompts(secret=secret)["items"], [])
        self.assert_problem(self.api("get", "/prompts?page=0", self.token(self.editor)), 422,
                            "page")


class CollectionTests(ApiTestCase):
    def setUp(self):
        self.image = make_image(make_job(self.project, self.editor, self.model))
        self.board = Collection.objects.create(
            team=self.team, name="Moodboard", visibility=CollectionVisibility.TEAM,
            created_by=self.editor,
        )
        self.hers = Collection.objects.create(
            team=self.other_team, name="Hers", visibility=CollectionVisibility.TEAM,
            created_by=self.outsider,
        )

    def add(self, secret, image_ids, collection=None):
        collection = collection or self.board
        return self.api("post", f"/collections/{collection.pk}/images", secret,
                        json={"image_ids": image_ids})

    def test_list_get_and_add_images(self):
        secret = self.token(self.editor)
        listed = self.api("get", "/collections", secret).json()
        self.assertEqual([collection["name"] for collection in listed], ["Moodboard"])
        response = self.add(secret, [self.image.pk])
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["image_ids"], [self.image.pk])
        body = self.api("get", f"/collections/{self.board.pk}", secret).json()
        self.assertEqual((body["name"], body["image_ids"]), ("Moodboard", [self.image.pk]))

    def test_other_teams_collections_are_404(self):
        secret = self.token(self.outsider)
        listed = self.api("get", "/collections", secret).json()
        self.assertEqual([collection["name"] for collection in listed], ["Hers"])
        self.assert_problem(self.api("get", f"/collections/{self.board.pk}", secret), 404)
        self.assert_problem(self.add(secret, [self.image.pk]), 404)
        self.assertFalse(self.board.items.exists())

    def test_the_outsider_cannot_add_an_image_she_cannot_see(self):
        self.assert_problem(self.add(self.token(self.outsider), [self.image.pk], self.hers),
                            422, "image_ids")

    def test_a_viewer_token_only_reads(self):
        self.assert_problem(self.add(self.token(self.viewer), [self.image.pk]), 403)

    def test_bad_image_ids_name_the_field_and_add_nothing(self):
        secret = self.token(self.editor)
        self.assert_problem(self.add(secret, []), 422, "image_ids")
        self.assert_problem(self.add(secret, ["x"]), 422, "image_ids.0")
        self.assert_problem(self.add(secret, [self.image.pk, 10**17]), 422, "image_ids")
        self.assertFalse(self.board.items.exists())


class TrainingRunTests(ApiTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor)

    def start(self, secret=None, subject=None, **fields):
        payload = {"project": self.project.pk, "model": self.model.pk, "preset": "quick",
                   **fields}
        path = f"/subjects/{(subject or self.subject).pk}/training-runs"
        with mock.patch("generation.training.services.enqueue_training") as enqueue:
            response = self.api("post", path, secret or self.token(self.editor), json=payload)
        return response, enqueue

    def test_a_run_is_queued_from_a_preset_with_overrides(self):
        response, enqueue = self.start(steps=30, seed=9)
        self.assertEqual(response.status_code, 201, response.content)
        run = TrainingRun.objects.get()
        enqueue.assert_called_once_with(run.pk)
        body = response.json()
        self.assertEqual((body["id"], body["status"], body["steps"]), (run.pk, "queued", 30))
        self.assertEqual((run.seed, run.resolution, run.created_by), (9, 256, self.editor))
        fetched = self.api("get", f"/training-runs/{run.pk}", self.token(self.viewer)).json()
        self.assertEqual(fetched["subject_id"], self.subject.pk)

    def test_a_flux_run_takes_the_flux_presets(self):
        flux = DiffusionModel.objects.create(
            name="flux", source="/m/flux", family="flux1", default_width=512
        )
        response, _ = self.start(model=flux.pk, preset="high_quality")
        self.assertEqual(response.status_code, 201, response.content)
        run = TrainingRun.objects.get()
        preset = FLOW_PRESETS["flux1"]["high_quality"]
        self.assertEqual((run.steps, run.rank), (preset["steps"], preset["rank"]))
        # SD's high-quality preset trains the text encoder, which FLUX.1 runs refuse.
        self.assertFalse(run.train_text_encoder)

    def test_the_flux_24_gb_preset_stores_the_base_in_fp8_and_is_refused_for_sd(self):
        flux = DiffusionModel.objects.create(
            name="flux", source="/m/flux", family="flux1", default_width=1024
        )
        response, _ = self.start(model=flux.pk, preset="fp8_24gb")
        self.assertEqual(response.status_code, 201, response.content)
        run = TrainingRun.objects.get()
        self.assertEqual((run.preset, run.fp8_base, run.rank), ("fp8_24gb", True, 16))
        self.assertLess(run.estimated_memory_bytes, 24 * 1024**3)
        self.assert_problem(self.start(preset="fp8_24gb")[0], 422, "preset")
        self.assertEqual(TrainingRun.objects.count(), 1)

    def test_fp8_base_weights_can_be_asked_for_on_any_flow_preset(self):
        sd3 = DiffusionModel.objects.create(
            name="sd35", source="/m/sd35", family="sd3", default_width=1024
        )
        response, _ = self.start(model=sd3.pk, preset="quick", fp8_base=True)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertTrue(TrainingRun.objects.get().fp8_base)
        # Not for SD 1.x/2.x or SDXL, whose UNets are small enough.
        self.assert_problem(self.start(fp8_base=True)[0], 422, "fp8_base")

    def test_bad_settings_name_their_field_and_queue_nothing(self):
        self.assert_problem(self.start(steps=0)[0], 422, "steps")
        self.assert_problem(self.start(preset="overnight")[0], 422, "preset")
        self.assert_problem(self.start(rank="many")[0], 422, "rank")
        self.assert_problem(self.start(colour="red")[0], 422, "colour")
        self.assertFalse(TrainingRun.objects.exists())

    def test_other_teams_subject_run_and_project_are_404(self):
        secret = self.token(self.outsider)
        self.assert_problem(self.start(secret)[0], 404)
        hers = make_subject(self.other_team, self.outsider, name="Hers", images=3)
        self.assert_problem(self.start(secret, subject=hers)[0], 404)
        run = make_run(self.subject, self.project, self.editor, self.model)
        self.assert_problem(self.api("get", f"/training-runs/{run.pk}", secret), 404)
        self.assert_problem(self.api("post", f"/training-runs/{run.pk}/cancel", secret), 404)
        self.assertEqual(TrainingRun.objects.count(), 1)

    def test_a_viewer_may_not_start_a_run(self):
        self.assert_problem(self.start(self.token(self.viewer))[0], 403)

    def test_its_author_cancels_once_and_others_may_not(self):
        run = make_run(self.subject, self.project, self.editor, self.model)
        path = f"/training-runs/{run.pk}/cancel"
        self.assert_problem(self.api("post", path, self.token(self.viewer)), 403)
        response = self.api("post", path, self.token(self.editor))
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["status"], "canceled")
        self.assert_problem(self.api("post", path, self.token(self.editor)), 409)
