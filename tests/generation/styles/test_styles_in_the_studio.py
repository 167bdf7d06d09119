"""Styles in the studio's generate form: the picked styles are merged into the prompts as
A1111 merges them (modules/styles.py), before the prompt policy and the wildcards read them;
the job keeps the styled prompts and the style names. Whatever the form refuses, no job is
made."""

from django.test import SimpleTestCase
from django.urls import reverse

from generation.models import GenerationJob
from generation.parameters_import import parse_a1111_infotext
from generation.parameters_import.a1111 import recipe_infotext
from generation.styles.applying import merge_prompts, styled, styles_in_prompts
from generation.styles.models import Style
from generation.wildcards.models import Wildcard
from studio.moderation.models import Policy
from tests.base import GenerateFormTestCase, make_image
from tests.generation.parameters_import.test_parameters_import import png_bytes, upload


class MergeTestCase(SimpleTestCase):
    """A1111's merge_prompts and apply_styles_to_prompt, case by case."""

    def test_the_placeholder_takes_the_prompt_as_it_is(self):
        self.assertEqual(merge_prompts("photo of {prompt}, grain", "  a cat "),
                         "photo of   a cat , grain")
        self.assertEqual(merge_prompts("{prompt} and {prompt}", "a"), "a and a")
        self.assertEqual(merge_prompts("photo of {prompt}", ""), "photo of ")

    def test_without_it_the_style_is_appended_after_a_comma(self):
        self.assertEqual(merge_prompts(" film grain ", " a cat "), "a cat, film grain")
        self.assertEqual(merge_prompts("film grain", ""), "film grain")
        self.assertEqual(merge_prompts("", "a cat"), "a cat")
        self.assertEqual(merge_prompts("", ""), "")

    def test_styles_apply_in_order(self):
        self.assertEqual(styled("a cat", ["photo of {prompt}", "grain", "[{prompt}]"]),
                         "[photo of a cat, grain]")


class InferTestCase(SimpleTestCase):
    """A1111's extract_styles_from_prompt: what merge_prompts put in, taken out again."""

    def test_the_styles_applied_are_found_in_order(self):
        film = Style(name="Film", prompt="analog photo of {prompt}", negative_prompt="digital")
        grain = Style(name="Grain", prompt="film grain", negative_prompt="")
        ink = Style(name="Ink", prompt="ink", negative_prompt="")
        prompt = styled("a cat", [film.prompt, grain.prompt])
        negative = styled("blurry", [film.negative_prompt, grain.negative_prompt])
        self.assertEqual(styles_in_prompts(prompt, negative, [ink, grain, film]),
                         (["Film", "Grain"], "a cat", "blurry"))

    def test_a_style_matches_only_where_both_prompts_hold_it(self):
        film = Style(name="Film", prompt="{prompt}, film", negative_prompt="digital")
        self.assertEqual(styles_in_prompts("a cat, film", "blurry", [film]),
                         ([], "a cat, film", "blurry"))
        self.assertEqual(styles_in_prompts("a film about cats", "digital", [film]),
                         ([], "a film about cats", "digital"))
        self.assertEqual(styles_in_prompts("a cat", "", [Style(name="Empty")]),
                         ([], "a cat", ""))


class StudioStylesTestCase(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.film = Style.objects.create(team=cls.team, name="Film",
                                        prompt="analog photo of {prompt}",
                                        negative_prompt="digital")
        cls.grain = Style.objects.create(team=cls.team, name="Grain", prompt="film grain",
                                         negative_prompt="{prompt}, smooth")
        Style.objects.create(team=cls.other_team, name="Theirs", prompt="secret")

    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse",
            "negative_prompt": "blurry",
            "model": self.model.pk,
            "steps": 4,
            "guidance_scale": 7.0,
            "width": 64,
            "height": 64,
            "seed": 100,
            "styles": ["Film", "Grain"],
        }

    def test_the_job_keeps_the_styled_prompts_and_the_style_names(self):
        response = self.post(replace_form="1")  # a form that showed errors is drawn again
        self.assertEqual(response.status_code, 200)
        job = GenerationJob.objects.get()
        self.assertEqual(job.prompt, "analog photo of a lighthouse, film grain")
        self.assertEqual(job.negative_prompt, "blurry, digital, smooth")
        self.assertEqual(job.styles, ["Film", "Grain"])
        self.assertEqual(job.recipe().styles, ("Film", "Grain"))
        # The form comes back as typed, the styles still picked (not applied twice).
        form = response.context["form"]
        self.assertEqual(form.initial["prompt"], "a lighthouse")
        self.assertEqual(form.initial["negative_prompt"], "blurry")
        self.assertEqual(form.initial["styles"], ["Film", "Grain"])

    def test_the_order_picked_is_the_order_applied(self):
        self.post(styles=["Grain", "Film"])
        job = GenerationJob.objects.get()
        self.assertEqual(job.prompt, "analog photo of a lighthouse, film grain")
        self.post(styles=["Grain", "Film"], prompt="a boat", negative_prompt="")
        self.assertEqual(GenerationJob.objects.latest("pk").negative_prompt, ", smooth, digital")

    def test_the_studio_offers_the_teams_styles_only(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, 'value="Film"')
        self.assertContains(response, 'value="Grain"')
        self.assertNotContains(response, "Theirs")

    def test_an_unknown_or_other_teams_style_is_refused(self):
        self.assert_refused("styles", "No style of this team is called Theirs",
                            styles=["Film", "Theirs"])
        self.assert_refused("styles", "No style of this team is called Gone", styles=["Gone"])

    def test_a_styled_prompt_longer_than_a_prompt_is_refused(self):
        Style.objects.create(team=self.team, name="Long", prompt="x" * 1990)
        self.assert_refused("styles", "the prompt has 2,004 characters, more than the 2,000",
                            styles=["Long"])

    def test_the_prompt_policy_screens_the_styled_prompt(self):
        Policy.objects.create(team=self.team, blocked_terms="grain")
        self.assert_refused("prompt", "grain")

    def test_a_styles_wildcards_expand_with_the_prompt(self):
        Wildcard.objects.create(team=self.team, name="season", values="winter")
        Style.objects.create(team=self.team, name="Season", prompt="{prompt} in __season__")
        self.post(styles=["Season"])
        job = GenerationJob.objects.get()
        self.assertEqual(job.prompt, "a lighthouse in winter")
        self.assertEqual(job.prompt_template, "a lighthouse in __season__")
        self.assertEqual(job.styles, ["Season"])

    def test_the_image_page_names_the_styles(self):
        self.post()
        image = make_image(GenerationJob.objects.get())
        self.client.force_login(self.viewer)
        response = self.client.get(reverse("image_detail", args=[image.pk]))
        self.assertContains(response, "analog photo of a lighthouse, film grain")
        self.assertContains(response, '<span class="inline-label">Styles</span> Film, Grain')

    def test_importing_an_infotext_picks_the_styles_its_prompts_hold(self):
        """As A1111 pastes an infotext by default ("Apply if any"): the team's styles found are
        picked and their text taken out; none found, the styles ticked stay."""
        text = ("analog photo of a red fox, film grain\nNegative prompt: dull, digital, smooth\n"
                "Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 512x512")
        url = reverse("parameters_import", args=[self.project.pk])
        response = self.client.post(url, {
            "prompt": "", "model": self.model.pk, "styles": ["Grain"],
            "image": upload(png_bytes({"parameters": text})),
        }, headers={"HX-Request": "true"})
        form = response.context["form"]
        self.assertEqual((form.initial["prompt"], form.initial["negative_prompt"]),
                         ("a red fox", "dull"))
        self.assertEqual(form.initial["styles"], ["Film", "Grain"])
        self.assertContains(response, 'value="Film" id="id_styles_0" checked')
        plain = text.replace("analog photo of a red fox, film grain", "a red fox")
        response = self.client.post(url, {
            "prompt": "", "model": self.model.pk, "styles": ["Grain"],
            "image": upload(png_bytes({"parameters": plain})),
        }, headers={"HX-Request": "true"})
        form = response.context["form"]
        self.assertEqual(form.initial["prompt"], "a red fox")
        self.assertEqual(form.initial["styles"], ["Grain"])

    def test_the_infotext_holds_the_styled_prompt_and_no_style_names(self):
        """As A1111 1.6+: the styles' text is in the prompt; it writes no "Styles" field."""
        self.post()
        job = GenerationJob.objects.get()
        text = recipe_infotext(job, seed=job.seed, sampler="Euler")
        self.assertTrue(text.startswith("analog photo of a lighthouse, film grain\n"
                                        "Negative prompt: blurry, digital, smooth\nSteps: 4"))
        self.assertNotIn("Styles", text)
        imported = parse_a1111_infotext(text)
        self.assertEqual(imported.values["prompt"], job.prompt)
        self.assertNotIn("styles", imported.values)
