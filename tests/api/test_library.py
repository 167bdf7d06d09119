"""/api/v1 teams, projects, models, LoRAs and embeddings."""

from generation.choices import ModelFamily
from generation.models import DiffusionModel, TeamModelSetting
from studio.accounts.models import Role
from tests.api.base import ApiTestCase
from tests.lora_builders import make_lora


class LibraryTests(ApiTestCase):
    def test_teams_with_the_callers_role(self):
        body = self.api("get", "/teams", self.token(self.editor)).json()
        self.assertEqual(body, [{"id": self.team.pk, "name": "Alpha", "role": "editor"}])

    def test_models_the_caller_may_use_in_the_project(self):
        DiffusionModel.objects.create(name="admins-only", source="/m/a", min_role=Role.ADMIN)
        switched_off = DiffusionModel.objects.create(name="off", source="/m/o")
        TeamModelSetting.objects.create(team=self.team, model=switched_off, is_enabled=False)
        path = f"/projects/{self.project.pk}/models"
        names = [model["name"] for model in self.api("get", path, self.token(self.editor)).json()]
        self.assertEqual(names, ["tiny-sd15"])
        names = [model["name"] for model in self.api("get", path, self.token(self.admin)).json()]
        self.assertEqual(names, ["admins-only", "tiny-sd15"])
        self.assert_problem(self.api("get", f"{path}?kind=lens", self.token(self.admin)), 422,
                            "kind")

    def test_flow_models_are_listed_with_their_family(self):
        DiffusionModel.objects.create(name="flux-dev", source="/m/f", family=ModelFamily.FLUX1,
                                      default_guidance_scale=3.5)
        DiffusionModel.objects.create(name="sd35", source="/m/s", family=ModelFamily.SD3)
        path = f"/projects/{self.project.pk}/models"
        body = self.api("get", path, self.token(self.editor)).json()
        self.assertEqual([(model["name"], model["family"]) for model in body],
                         [("flux-dev", "flux1"), ("sd35", "sd3"), ("tiny-sd15", "sd15")])
        self.assertEqual(body[0]["default_guidance_scale"], 3.5)

    def test_the_schema_describes_the_flow_families_and_shift(self):
        schemas = self.client.get("/api/v1/openapi.json").json()["components"]["schemas"]
        family = schemas["ModelOut"]["properties"]["family"]
        self.assertIn("FLUX.1's guidance scale is its distilled guidance", family["description"])
        self.assertIn("`shift`", family["description"])
        self.assertEqual(family["$ref"], "#/components/schemas/ModelFamily")
        self.assertEqual(schemas["ModelFamily"]["enum"], ModelFamily.values)
        shift = schemas["JobCreateIn"]["properties"]["shift"]
        self.assertIn("FLUX.1 and SD 3.x only", shift["description"])

    def test_loras_and_embeddings_of_the_team(self):
        make_lora(self.team, self.editor, "paper_cut")
        make_lora(self.other_team, self.outsider, "hers")
        body = self.api("get", f"/teams/{self.team.pk}/loras", self.token(self.viewer)).json()
        self.assertEqual([lora["name"] for lora in body], ["paper_cut"])
        self.assertEqual(body[0]["prompt_tag"], "<lora:paper_cut:1>")
        embeddings = self.api("get", f"/teams/{self.team.pk}/embeddings", self.token(self.viewer))
        self.assertEqual(embeddings.json(), [])

    def test_other_teams_libraries_are_404(self):
        secret = self.token(self.outsider)
        for path in (f"/teams/{self.team.pk}/loras", f"/teams/{self.team.pk}/embeddings",
                     f"/projects/{self.project.pk}/models", f"/projects/{self.project.pk}"):
            self.assert_problem(self.api("get", path, secret), 404)
