"""FLUX.1 and SD 3.x images' infotext as Forge writes it (issue #17): FLUX.1's embedded
guidance as "Distilled CFG Scale" beside "CFG scale: 1", the flow shift as "Shift" (Forge
Neo), the model hash; and Forge's own PNGs of such models read back into the form."""

from django.urls import reverse

from generation.models import DiffusionModel, GenerationJob, ModelFamily
from generation.parameters_import import parse_a1111_infotext
from generation.parameters_import.a1111 import recipe_infotext
from generation.parameters_import.common import ParameterImportError
from generation.recipe import Recipe
from tests.base import StudioTestCase
from tests.generation.parameters_import.test_parameters_import import png_bytes, upload

# What Forge (f2.0.1) writes for FLUX.1 [dev] with its flux UI preset: Euler, Simple,
# CFG scale 1 and the distilled guidance, the file's hash and the modules loaded beside it.
FORGE_FLUX_DEV = (
    "a red fox in the snow, golden hour\n"
    "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, "
    "Distilled CFG Scale: 3.5, Seed: 1234567, Size: 896x1152, Model hash: 0f2bbc2ccd, "
    "Model: flux1-dev-bnb-nf4-v2, Diffusion in Low Bits: bnb-nf4 (fp16 LoRA), "
    "Version: f2.0.1v1.10.1-previous-313-g8a042934, Module 1: ae, Module 2: clip_l"
)
# Forge Neo for SD 3.5 with a shift of its own.
FORGE_SD35_SHIFT = (
    "a lighthouse at dusk\n"
    "Negative prompt: blurry\n"
    "Steps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 4.5, Shift: 3, "
    "Seed: 42, Size: 1024x1024, Model: sd3.5_medium, Model hash: 11fe06e223"
)


class ForgeFlowInfotextTestCase(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.flux = DiffusionModel.objects.create(
            name="flux1-dev", source="/models/flux1-dev.safetensors",
            family=ModelFamily.FLUX1, sha256="0f2bbc2ccd" + "0" * 54,
        )
        cls.sd35 = DiffusionModel.objects.create(
            name="sd3.5_medium", source="/models/sd35", family=ModelFamily.SD3,
        )

    def infotext(self, model, **fields):
        recipe = Recipe(model=model.pk, prompt="a red fox", steps=20, seed=7, width=1024,
                        height=1024, **fields)
        job = GenerationJob.objects.create(project=self.project, created_by=self.editor,
                                           **recipe.job_fields())
        return recipe_infotext(job, seed=7, sampler="Euler")

    def test_flux_writes_its_guidance_as_forges_distilled_cfg_scale(self):
        text = self.infotext(self.flux, guidance_scale=3.5, shift=1.75)
        self.assertEqual(
            text.split("\n")[1].split(", Version:")[0],
            "Steps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 1, "
            "Distilled CFG Scale: 3.5, Shift: 1.75, Seed: 7, Size: 1024x1024, "
            "Model hash: 0f2bbc2ccd, Model: flux1-dev",
        )
        self.assertNotIn("Shift", self.infotext(self.flux, guidance_scale=3.5))

    def test_sd3_writes_its_cfg_scale_and_shift(self):
        text = self.infotext(self.sd35, guidance_scale=4.5, shift=3.0)
        self.assertIn("Schedule type: Automatic, CFG scale: 4.5, Shift: 3, Seed: 7,", text)
        self.assertNotIn("Distilled", text)

    def test_our_flux_infotext_reads_back(self):
        values = parse_a1111_infotext(self.infotext(self.flux, guidance_scale=2.5,
                                                    shift=1.5)).values
        self.assertEqual((values["guidance_scale"], values["shift"], values["sampler"]),
                         (2.5, 1.5, "Euler"))

    def test_a_forge_flux_png_imports_its_distilled_guidance(self):
        imported = parse_a1111_infotext(FORGE_FLUX_DEV)
        values = imported.values
        self.assertEqual(values["prompt"], "a red fox in the snow, golden hour")
        self.assertEqual((values["steps"], values["seed"], values["width"], values["height"]),
                         (20, 1234567, 896, 1152))
        # Forge's Simple schedule on a flow model is the flow Euler's own: no note.
        self.assertEqual((values["guidance_scale"], values["sampler"]), (3.5, "Euler"))
        self.assertIsNone(values["shift"])  # the model's default
        self.assertEqual((imported.model_name, imported.model_hash),
                         ("flux1-dev-bnb-nf4-v2", "0f2bbc2ccd"))
        self.assertFalse([note for note in imported.not_applied
                          if note.startswith(("Schedule type", "CFG scale", "Distilled"))])
        # Forge's own loading settings are reported, not applied.
        self.assertIn("Module 1: ae", imported.not_applied)

    def test_dpm_2m_of_a_flow_model_reads_back_as_the_flow_sampler(self):
        # Not A1111's "Automatic" DPM++ 2M (Karras), which flow models don't run.
        recipe = Recipe(model=self.flux.pk, prompt="a fox", steps=20, seed=7, width=1024,
                        height=1024, guidance_scale=3.5, sampler="DPM++ 2M")
        job = GenerationJob.objects.create(project=self.project, created_by=self.editor,
                                           **recipe.job_fields())
        ours = recipe_infotext(job, seed=7, sampler="DPM++ 2M")
        forges = FORGE_FLUX_DEV.replace("Sampler: Euler", "Sampler: DPM++ 2M")
        for text in (ours, forges):
            imported = parse_a1111_infotext(text)
            self.assertEqual(imported.values["sampler"], "DPM++ 2M", text)
            self.assertFalse([note for note in imported.not_applied
                              if note.startswith(("Sampler", "Schedule type"))])

    def test_a_forge_sd35_png_imports_its_shift(self):
        imported = parse_a1111_infotext(FORGE_SD35_SHIFT)
        values = imported.values
        self.assertEqual((values["guidance_scale"], values["shift"], values["sampler"]),
                         (4.5, 3.0, "Euler"))
        self.assertEqual(values["negative_prompt"], "blurry")
        self.assertFalse([note for note in imported.not_applied
                          if note.startswith(("Schedule type", "Shift"))])

    def test_cfg_on_top_of_distilled_guidance_is_reported(self):
        text = FORGE_FLUX_DEV.replace("CFG scale: 1,", "CFG scale: 2,")
        imported = parse_a1111_infotext(text)
        self.assertEqual(imported.values["guidance_scale"], 3.5)
        self.assertIn("CFG scale: 2 (FLUX.1 runs with its distilled guidance only, no CFG)",
                      imported.not_applied)

    def test_a_shift_that_is_no_number_names_the_field(self):
        with self.assertRaisesMessage(ParameterImportError, "Shift: “high” is not a number."):
            parse_a1111_infotext(FORGE_SD35_SHIFT.replace("Shift: 3", "Shift: high"))


class ForgeFlowImportViewTestCase(StudioTestCase):
    """A Forge FLUX.1 PNG dropped on the studio fills the form for the library's FLUX.1
    model: its distilled guidance as the guidance, no shift (the model's default), even
    where the form held one."""

    def test_the_form_gets_the_flux_settings(self):
        flux = DiffusionModel.objects.create(
            name="flux1-dev-bnb-nf4-v2", source="/models/flux1-dev-bnb-nf4-v2.safetensors",
            family=ModelFamily.FLUX1,
        )
        self.client.force_login(self.editor)
        url = reverse("parameters_import", args=[self.project.pk])
        form_values = {"prompt": "what I was writing", "model": flux.pk, "steps": 25,
                       "guidance_scale": 7, "width": 256, "height": 256, "shift": 6}
        data = png_bytes({"parameters": FORGE_FLUX_DEV})
        response = self.client.post(url, {**form_values, "image": upload(data)},
                                    headers={"HX-Request": "true"})
        self.assertEqual(response.status_code, 200)
        initial = response.context["form"].initial
        self.assertEqual(
            (initial["model"], initial["guidance_scale"], initial["sampler"],
             initial["shift"], initial["width"], initial["height"]),
            (flux.pk, 3.5, "Euler", None, 896, 1152),
        )
        notice = response.context["import_notice"]
        self.assertIn("Module 1: ae", notice["not_applied"])
        self.assertNotIn("shift", notice["text"])  # cleared, not filled
