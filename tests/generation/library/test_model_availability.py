"""Which models a user may generate with in a project: enabled in the library and for the
team, a checkpoint of a family the workers run, the user's role at least the minimum (the
team's own, else the library's). The studio offers exactly those; a job with any other is
refused with the reason and never created."""

from unittest import mock

from django.urls import reverse

from generation import services
from generation.forms import GenerationForm
from generation.models import (
    DiffusionModel,
    GenerationJob,
    JobStatus,
    ModelFamily,
    ModelKind,
    TeamModelSetting,
)
from studio.accounts.models import Role
from tests.base import StudioTestCase, make_job


# Every family in the library generates now; these workers stand for ones that run SD only,
# so that "Some XL" is a checkpoint of a family they don't run.
@mock.patch("generation.models.GENERATION_FAMILIES", (ModelFamily.SD15, ModelFamily.SD2))
class ModelAvailabilityTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        make = DiffusionModel.objects.create
        cls.admins_only = make(name="Admins only", source="owner/admins", min_role=Role.ADMIN)
        cls.xl = make(name="Some XL", source="owner/xl", family=ModelFamily.SDXL)
        cls.canny = make(name="Canny", source="owner/canny", kind=ModelKind.CONTROLNET)
        cls.off = make(name="Switched off", source="owner/off", is_enabled=False)
        cls.sd2 = make(name="SD 2.1", source="owner/sd21", family=ModelFamily.SD2)

    def available(self, user, project=None):
        project = project or self.project
        models = DiffusionModel.objects.available_to(user, project)
        return list(models.values_list("name", flat=True))

    def set_team(self, model, **fields):
        TeamModelSetting.objects.update_or_create(team=self.team, model=model, defaults=fields)

    def assert_agrees(self, user):
        """available_to and refusal_reason give the same answer for every model."""
        available = set(self.available(user))
        for model in DiffusionModel.objects.all():
            refusal = model.refusal_reason(user, self.project.team)
            self.assertEqual(model.name in available, refusal is None, (model.name, refusal))

    # --- the rules ------------------------------------------------------------------

    def test_editors_get_the_enabled_checkpoints_the_workers_run(self):
        self.assertEqual(self.available(self.editor), ["SD 2.1", "tiny-sd15"])
        self.assertEqual(
            self.available(self.admin), ["Admins only", "SD 2.1", "tiny-sd15"]
        )
        self.assertEqual(self.available(self.viewer), [])
        self.assertEqual(self.available(self.outsider), [])
        for user in self.users_by_role().values():
            self.assert_agrees(user)

    def test_a_team_switches_a_model_off_for_itself_only(self):
        self.set_team(self.model, is_enabled=False)
        self.assertEqual(self.available(self.owner), ["Admins only", "SD 2.1"])
        self.assertIn("tiny-sd15", self.available(self.outsider, self.other_project))
        self.assertEqual(
            self.model.refusal_reason(self.editor, self.team),
            "the team Alpha has switched it off.",
        )
        self.assert_agrees(self.owner)

    def test_a_teams_minimum_role_replaces_the_librarys(self):
        self.set_team(self.model, min_role=Role.OWNER)
        self.set_team(self.admins_only, min_role=Role.EDITOR)
        self.assertEqual(self.available(self.editor), ["Admins only", "SD 2.1"])
        self.assertEqual(self.available(self.admin), ["Admins only", "SD 2.1"])
        self.assertEqual(self.available(self.owner), ["Admins only", "SD 2.1", "tiny-sd15"])
        self.assertEqual(
            self.model.refusal_reason(self.admin, self.team),
            "it needs the Owner role in Alpha (you are Admin).",
        )
        for user in self.users_by_role().values():
            self.assert_agrees(user)

    def test_a_blank_team_role_keeps_the_librarys(self):
        self.set_team(self.admins_only, is_enabled=True, min_role="")
        self.assertNotIn("Admins only", self.available(self.editor))
        self.assertIn("Admins only", self.available(self.admin))

    # --- the studio page ---------------------------------------------------------------

    def studio(self, user):
        self.client.force_login(user)
        return self.client.get(reverse("project_studio", args=[self.project.pk]))

    def offered(self, response):
        return [model.name for model in response.context["form"].fields["model"].queryset]

    def test_the_studio_offers_only_what_the_user_may_use(self):
        self.assertEqual(self.offered(self.studio(self.editor)), ["SD 2.1", "tiny-sd15"])
        response = self.studio(self.admin)
        self.assertEqual(self.offered(response), ["Admins only", "SD 2.1", "tiny-sd15"])
        self.assertContains(response, "Admins only")
        self.assertNotContains(response, "Some XL")
        # A ControlNet is offered in the ControlNet section, never as the model.
        self.assertNotIn("Canny", self.offered(response))
        self.assertEqual(
            [model.name for model in response.context["form"].fields["control_model"].queryset],
            ["Canny"],
        )

    def test_the_default_model_is_one_the_user_may_use(self):
        self.set_team(self.admins_only, min_role=Role.EDITOR)
        self.set_team(self.sd2, is_enabled=False)
        self.set_team(self.model, is_enabled=False)
        response = self.studio(self.editor)
        self.assertEqual(response.context["form"].initial["model"], self.admins_only.pk)

    def test_nothing_available_says_why_and_where_to_look(self):
        for model in (self.model, self.sd2):
            self.set_team(model, is_enabled=False)
        response = self.studio(self.editor)
        self.assertContains(response, "No model in the library is available to you in Alpha")
        self.assertContains(response, reverse("team_models", args=[self.team.pk]))

    def test_a_duplicated_job_offers_only_usable_models_too(self):
        job = make_job(self.project, self.admin, self.admins_only, status=JobStatus.FINISHED)
        self.client.force_login(self.editor)
        url = reverse("project_studio", args=[self.project.pk])
        response = self.client.get(url, {"duplicate": job.pk})
        self.assertNotIn("Admins only", self.offered(response))

    def test_an_imported_png_never_selects_a_model_the_user_may_not_use(self):
        from django.core.files.uploadedfile import SimpleUploadedFile

        from tests.generation.parameters_import.test_parameters_import import (
            A1111_INFOTEXT,
            png_bytes,
        )

        DiffusionModel.objects.create(  # the infotext's "Model:"
            name="v1-5-pruned-emaonly", source="owner/v15", min_role=Role.ADMIN
        )
        image = SimpleUploadedFile(
            "a.png", png_bytes({"parameters": A1111_INFOTEXT}), content_type="image/png"
        )
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("parameters_import", args=[self.project.pk]), {"image": image},
            headers={"HX-Request": "true"},
        )
        self.assertEqual(response.context["form"].initial["model"], self.sd2.pk)
        self.assertNotIn("v1-5-pruned-emaonly", self.offered(response))

    # --- jobs ---------------------------------------------------------------------

    def post_job(self, user, model):
        self.client.force_login(user)
        data = {"prompt": "a red fox", "model": model.pk, "steps": 4, "guidance_scale": 7,
                "width": 64, "height": 64}
        with mock.patch("generation.services.enqueue_generation") as enqueue:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(
                    reverse("job_create", args=[self.project.pk]), data,
                    headers={"HX-Request": "true"},
                )
        return response, enqueue

    def assert_job_refused(self, user, model, reason):
        response, enqueue = self.post_job(user, model)
        self.assertEqual(response.status_code, 422)
        errors = " ".join(response.context["form"].errors["model"])
        self.assertIn(f"You may not use “{model.name}” in this project: {reason}", errors)
        self.assertContains(response, "field-error", status_code=422)
        self.assertFalse(GenerationJob.objects.exists())
        enqueue.assert_not_called()

    def test_a_job_with_a_model_above_the_users_role_is_refused(self):
        self.assert_job_refused(
            self.editor, self.admins_only, "it needs the Admin role in Alpha (you are Editor)."
        )

    def test_a_job_with_a_model_the_team_switched_off_is_refused(self):
        self.set_team(self.model, is_enabled=False)
        self.assert_job_refused(self.owner, self.model, "the team Alpha has switched it off.")

    def test_a_job_with_a_model_the_studio_cannot_run_is_refused(self):
        self.assert_job_refused(self.owner, self.xl, "Stable Diffusion XL models can't generate")
        self.assert_job_refused(self.owner, self.canny, "it is a ControlNet model, not a")
        self.assert_job_refused(self.owner, self.off, "it is switched off in the model library")

    def test_a_job_with_an_allowed_model_is_created(self):
        response, enqueue = self.post_job(self.admin, self.admins_only)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(GenerationJob.objects.get().model, self.admins_only)

    def test_a_retry_is_refused_once_the_model_is_no_longer_allowed(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FAILED)
        self.set_team(self.model, is_enabled=False)
        self.client.force_login(self.editor)
        with mock.patch("generation.services.enqueue_generation"):
            response = self.client.post(
                reverse("job_retry", args=[job.pk]), headers={"HX-Request": "true"}
            )
        self.assertEqual(response.status_code, 403)
        self.assertEqual(GenerationJob.objects.count(), 1)

    def test_the_service_refuses_too(self):
        self.set_team(self.model, is_enabled=False)
        params = {"model": self.model, "prompt": "x", "steps": 4, "guidance_scale": 7,
                  "width": 64, "height": 64}
        with self.assertRaisesMessage(services.ModelNotAllowed, "has switched it off"):
            services.job_create(user=self.editor, project=self.project, params=params)
        self.assertFalse(GenerationJob.objects.exists())

    def params_with(self, model):
        return {"model": model, "prompt": "x", "steps": 4, "guidance_scale": 7,
                "width": 64, "height": 64}

    def test_the_service_uses_the_team_setting_read_with_the_model(self):
        """A model the form found with its team setting (services.with_team_setting) is
        checked against that setting, with no query of its own; read for another team,
        or without it, the setting is read again."""
        self.set_team(self.model, is_enabled=False)
        self.project.team.role_of(self.editor)  # read once per request by the role check
        models = DiffusionModel.objects.filter(pk=self.model.pk)
        [found] = services.with_team_setting(models, self.team)
        with self.assertNumQueries(0), \
                self.assertRaisesMessage(services.ModelNotAllowed, "has switched it off"):
            services.job_admit(user=self.editor, project=self.project,
                               params=self.params_with(found))
        [other_teams] = services.with_team_setting(models, self.other_team)
        with self.assertNumQueries(1), \
                self.assertRaisesMessage(services.ModelNotAllowed, "has switched it off"):
            services.job_admit(user=self.editor, project=self.project,
                               params=self.params_with(other_teams))

    def test_a_model_read_with_no_team_setting_has_the_librarys_rules(self):
        self.project.team.role_of(self.editor)
        [found] = services.with_team_setting(
            DiffusionModel.objects.filter(pk=self.admins_only.pk), self.team
        )
        with self.assertNumQueries(0), \
                self.assertRaisesMessage(services.ModelNotAllowed, "needs the Admin role"):
            services.job_admit(user=self.editor, project=self.project,
                               params=self.params_with(found))
        self.set_team(self.admins_only, min_role=Role.EDITOR)
        [found] = services.with_team_setting(
            DiffusionModel.objects.filter(pk=self.admins_only.pk), self.team
        )
        self.assertEqual(services.job_admit(user=self.editor, project=self.project,
                                            params=self.params_with(found)), [])


    def posted_form(self, model):
        return GenerationForm(
            {"prompt": "x", "model": model, "steps": 4, "guidance_scale": 7, "width": 64,
             "height": 64}, user=self.editor, project=self.project,
        )

    def test_a_posted_form_takes_a_model_read_with_its_teams_setting(self):
        """The API reads the model once, for its defaults: the form checks that one."""
        self.project.team.role_of(self.editor)
        [found] = services.with_team_setting(
            DiffusionModel.objects.filter(pk=self.model.pk), self.team
        )
        form = self.posted_form(found)
        with self.assertNumQueries(0):
            model = form.fields["model"].clean(found)
        self.assertIs(model, found)
        self.set_team(self.model, is_enabled=False)
        [switched_off] = services.with_team_setting(
            DiffusionModel.objects.filter(pk=self.model.pk), self.team
        )
        form = self.posted_form(switched_off)
        self.assertFalse(form.is_valid())
        self.assertIn("the team Alpha has switched it off.", form.errors["model"][0])
        # Read for another team, it is read again with this team's setting.
        [elsewhere] = services.with_team_setting(
            DiffusionModel.objects.filter(pk=self.model.pk), self.other_team
        )
        form = self.posted_form(elsewhere)
        self.assertFalse(form.is_valid())
        self.assertIn("the team Alpha has switched it off.", form.errors["model"][0])


class SdxlAvailabilityTestCase(StudioTestCase):
    def test_sdxl_checkpoints_are_offered_and_take_jobs(self):
        xl = DiffusionModel.objects.create(
            name="Some XL", source="owner/xl", family=ModelFamily.SDXL,
            default_width=1024, default_height=1024,
        )
        self.assertIsNone(xl.refusal_reason(self.editor, self.team))
        self.assertIn("Some XL", DiffusionModel.objects.available_to(self.editor, self.project)
                      .values_list("name", flat=True))
        self.client.force_login(self.editor)
        data = {"prompt": "a red fox", "model": xl.pk, "steps": 4, "guidance_scale": 7,
                "width": 1024, "height": 768}
        with mock.patch("generation.services.enqueue_generation") as enqueue:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(
                    reverse("job_create", args=[self.project.pk]), data,
                    headers={"HX-Request": "true"},
                )
        self.assertEqual(response.status_code, 200)
        job = GenerationJob.objects.get()
        self.assertEqual((job.model, job.width, job.height), (xl, 1024, 768))
        enqueue.assert_called_once()
