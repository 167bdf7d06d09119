"""Dynamic prompts in the studio's generate form: { } variants and the team's __wildcards__
are expanded once per job from its seed when the jobs are queued; the job keeps the
expansion as its prompt and the text as typed as its template, which the PNG's infotext
carries as the Dynamic Prompts extension writes it. Whatever the form refuses, no job is
made."""

from django.urls import reverse

from generation.models import GenerationJob
from generation.parameters_import import parse_a1111_infotext
from generation.parameters_import.a1111 import recipe_infotext
from generation.wildcards.expansion import expanded
from generation.wildcards.models import Wildcard
from studio.moderation.models import Policy
from tests.base import GenerateFormTestCase, make_image, make_job

SEASONS = ["spring", "summer", "autumn", "winter"]


class DynamicPromptTestCase(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        Wildcard.objects.create(team=cls.team, name="season", values="\n".join(SEASONS))
        Wildcard.objects.create(team=cls.team, name="light/warm", values="golden hour")
        Wildcard.objects.create(team=cls.other_team, name="theirs", values="secret")

    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a {red|blue} door in __season__, __light/*__",
            "negative_prompt": "{blurry|noisy}",
            "model": self.model.pk,
            "steps": 4,
            "guidance_scale": 7.0,
            "width": 64,
            "height": 64,
            "seed": 100,
            "batch_count": 4,
        }

    def wildcards(self):
        return {"season": SEASONS, "light/warm": ["golden hour"]}

    def test_each_job_gets_its_own_expansion_from_its_seed(self):
        response = self.post()
        self.assertEqual(response.status_code, 200)
        jobs = list(GenerationJob.objects.order_by("pk"))
        self.assertEqual([job.seed for job in jobs], [100, 101, 102, 103])
        for job in jobs:
            self.assertEqual(job.prompt_template, self.params["prompt"])
            self.assertEqual(job.negative_prompt_template, "{blurry|noisy}")
            self.assertEqual(
                job.prompt, expanded(job.prompt_template, self.wildcards(), seeds=[job.seed])[0]
            )
            self.assertRegex(job.prompt, r"^a (red|blue) door in (spring|summer|autumn|"
                                         r"winter), golden hour$")
            self.assertIn(job.negative_prompt, ("blurry", "noisy"))
        self.assertGreater(len({job.prompt for job in jobs}), 1)
        # The same text and seed give the same prompts again.
        self.post()
        again = list(GenerationJob.objects.order_by("pk"))[4:]
        self.assertEqual([job.prompt for job in again], [job.prompt for job in jobs])

    def test_a_random_seed_is_chosen_before_the_expansion(self):
        self.post(seed="", batch_count=1)
        job = GenerationJob.objects.get()
        self.assertEqual(
            job.prompt, expanded(job.prompt_template, self.wildcards(), seeds=[job.seed])[0]
        )

    def test_a_plain_prompt_has_no_template(self):
        self.post(prompt="a door (in spring:1.2) [red:blue:0.5]", negative_prompt="",
                  batch_count=1)
        job = GenerationJob.objects.get()
        self.assertEqual((job.prompt, job.prompt_template),
                         ("a door (in spring:1.2) [red:blue:0.5]", ""))

    def test_refusals_name_the_field(self):
        cases = [
            ("prompt", "No wildcard of this team is called __nope__", {"prompt": "a __nope__"}),
            ("prompt", "No wildcard of this team is called __theirs__",
             {"prompt": "a __theirs__ door"}),
            ("negative_prompt", "No wildcard of this team is called __bad__",
             {"negative_prompt": "__bad__"}),
            ("prompt", "The { } variants could not be read", {"prompt": "a {red|blue door"}),
            ("prompt", "A LoRA tag cannot be one of the { } variants",
             {"prompt": "a door {<lora:ink:1>|plain}"}),
        ]
        for field, message, overrides in cases:
            with self.subTest(overrides=overrides):
                self.assert_refused(field, message, **overrides)

    def test_hostile_nesting_is_refused_not_a_crash(self):
        self.assert_refused("prompt", "The { } variants could not be read",
                            prompt="{" * 50 + "a" + "}" * 49)
        self.assert_refused("prompt", "At most 50 { } variant groups in a prompt (900 given)",
                            prompt="{" * 900 + "a" + "}" * 900)

    def test_an_expansion_longer_than_a_prompt_is_refused(self):
        Wildcard.objects.create(team=self.team, name="long", values="x" * 500)
        self.assert_refused("prompt", "more than the 2,000 allowed",
                            prompt="__long__ " * 5)

    def test_the_prompt_policy_screens_every_expansion(self):
        """A blocked term that only a wildcard brings in is still refused."""
        Policy.objects.create(team=self.team, blocked_terms="winter")
        self.assert_refused("prompt", "winter", prompt="a door in __season__", batch_count=4)

    def test_the_infotext_carries_the_templates_as_the_extension_writes_them(self):
        self.post(batch_count=1)
        job = GenerationJob.objects.get()
        text = recipe_infotext(job, seed=job.seed, sampler="Euler")
        *_, settings, template, negative = text.split("\n")
        self.assertTrue(settings.startswith("Steps: 4, Sampler: Euler"))
        self.assertEqual(template, f"Template: {self.params['prompt']}")
        self.assertEqual(negative, "Negative Template: {blurry|noisy}")
        imported = parse_a1111_infotext(text)
        self.assertEqual(imported.values["prompt"], job.prompt)
        self.assertEqual(imported.values["template"], self.params["prompt"])
        self.assertEqual(imported.values["negative_template"], "{blurry|noisy}")
        self.assertEqual(imported.values["steps"], 4)
        self.assertEqual(imported.not_applied, [])


class ExtensionInfotextTestCase(GenerateFormTestCase):
    def test_an_infotext_written_by_the_extension(self):
        """As A1111 with sd-dynamic-prompts saves it: its PngInfoSaver appends the lines."""
        text = (
            "a blue door in winter\n"
            "Negative prompt: noisy\n"
            "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, "
            "Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
            "Version: v1.10.1\n"
            "Template: a {red|blue} door in __season__\n"
            "Negative Template: {blurry|noisy}"
        )
        imported = parse_a1111_infotext(text)
        self.assertEqual(imported.values["prompt"], "a blue door in winter")
        self.assertEqual(imported.values["negative_prompt"], "noisy")
        self.assertEqual(imported.values["template"], "a {red|blue} door in __season__")
        self.assertEqual(imported.values["negative_template"], "{blurry|noisy}")
        self.assertEqual(imported.values["seed"], 42)
        only_negative = text.replace("\nTemplate: a {red|blue} door in __season__", "")
        imported = parse_a1111_infotext(only_negative)
        self.assertNotIn("template", imported.values)
        self.assertEqual(imported.values["negative_template"], "{blurry|noisy}")

    def test_a_prompt_that_says_template_is_still_a_prompt(self):
        text = "a poster\nTemplate: bold\nSteps: 20, Sampler: Euler, Seed: 1, Size: 512x512"
        imported = parse_a1111_infotext(text)
        self.assertEqual(imported.values["prompt"], "a poster\nTemplate: bold")
        self.assertNotIn("template", imported.values)


class ImagePageTestCase(GenerateFormTestCase):
    def test_the_image_page_shows_the_template_beside_the_prompt(self):
        job = make_job(self.project, self.editor, self.model, prompt="a red door",
                       prompt_template="a {red|blue} door")
        image = make_image(job)
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_detail", args=[image.pk]))
        self.assertContains(response, "a red door")
        self.assertContains(
            response, '<span class="inline-label">Template</span> a {red|blue} door'
        )
