"""Stacking LoRAs on a job: picked in the form with weights and/or written as
<lora:name:weight> in the prompt; checked (names, team, family, weights, count), recorded
on the job, and bad input creates no job."""

from unittest import mock

import pytest
from django.test import override_settings
from django.urls import reverse

from generation.execution import generation_requests
from generation.loras.models import JobLora
from generation.loras.syntax import LoraSyntaxError, parse_lora_tags, prompt_without_lora_tags
from generation.models import DiffusionModel, GenerationJob, JobStatus
from generation.services import ModelNotAllowed, job_retry
from tests.base import StudioTestCase
from tests.lora_builders import make_lora

# -- The prompt syntax on its own ----------------------------------------------------------


def test_tags_are_read_with_weights_and_weight_defaults_to_one():
    tags = parse_lora_tags("a fox <lora:ink:0.6>, <lora:Water Colour> and <LORA:x:-1.5>")
    assert [(tag.name, tag.weight) for tag in tags] == [
        ("ink", 0.6), ("Water Colour", 1.0), ("x", -1.5)
    ]
    assert tags[0].text == "<lora:ink:0.6>"


def test_tags_are_removed_as_a1111_removes_them():
    assert prompt_without_lora_tags("a fox, <lora:ink:0.6> in snow<lora:b>") == "a fox,  in snow"
    assert prompt_without_lora_tags("no tags") == "no tags"


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("<lora::0.5>", "names no LoRA"),
        ("<lora:ink:strong>", "“strong” is not a weight"),
        ("<lora:ink:0.5:0.7>", "one weight per LoRA"),
        ("<lora:ink:3>", "The weight of LoRA “ink” is 3"),
        ("<lora:ink:nan>", "The weight of LoRA “ink” is nan"),
        ("a fox <lora:ink:0.5", "is not closed"),
    ],
)
def test_bad_tags_say_what_to_write(prompt, message):
    with pytest.raises(LoraSyntaxError, match=message):
        parse_lora_tags(prompt)


# -- The generate form ---------------------------------------------------------------------


class LoraStackingTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.ink = make_lora(cls.team, cls.editor, "ink", default_weight=0.7,
                            trigger_words="ink wash")
        cls.watercolor = make_lora(cls.team, cls.editor, "Water Colour")
        cls.xl = make_lora(cls.team, cls.editor, "xl-detail", family="sdxl")
        cls.theirs = make_lora(cls.other_team, cls.outsider, "secret")

    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {
            "prompt": "a lighthouse at dusk",
            "model": self.model.pk,
            "steps": 20,
            "guidance_scale": 7.5,
            "width": 512,
            "height": 512,
            "seed": 1234,
        }

    def post(self, **overrides):
        data = {**self.params, **overrides}
        with mock.patch("generation.services.enqueue_generation") as enqueue:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(self.url, data, headers={"HX-Request": "true"})
        return response, enqueue

    def stack(self, job):
        return [(used.lora, used.name, used.weight, used.in_prompt)
                for used in job.job_loras.all()]

    def assert_refused(self, field, message, **overrides):
        response, enqueue = self.post(**overrides)
        self.assertEqual(response.status_code, 422)
        errors = response.context["form"].errors
        self.assertIn(field, errors, errors)
        self.assertIn(message, " ".join(errors[field]))
        self.assertContains(response, message.replace("<", "&lt;").replace(">", "&gt;"),
                            status_code=422)
        self.assertFalse(GenerationJob.objects.exists())
        self.assertFalse(JobLora.objects.exists())
        enqueue.assert_not_called()

    def test_picked_loras_are_recorded_with_their_weights_in_order(self):
        # replace_form: as from a form that showed errors, which is drawn again.
        response, enqueue = self.post(lora=[self.watercolor.pk, self.ink.pk],
                                      lora_weight=["0.45", ""], replace_form="1")
        self.assertEqual(response.status_code, 200)
        job = GenerationJob.objects.get()
        enqueue.assert_called_once_with(job.pk)
        self.assertEqual(self.stack(job), [
            (self.watercolor, "Water Colour", 0.45, False),
            (self.ink, "ink", 0.7, False),  # an empty weight: its default weight
        ])
        used = job.job_loras.first()
        self.assertEqual(used.sha256, self.watercolor.sha256)
        # The form comes back with the stack still picked.
        self.assertContains(response, f'data-lora-id="{self.watercolor.pk}"')
        self.assertContains(response, 'value="0.45"')

    def test_prompt_tags_are_recorded_and_stay_in_the_prompt(self):
        prompt = "a lighthouse <lora:ink:0.6>, <lora:water colour>"
        self.post(prompt=prompt)
        job = GenerationJob.objects.get()
        self.assertEqual(job.prompt, prompt)
        self.assertEqual(self.stack(job), [
            (self.ink, "ink", 0.6, True),
            (self.watercolor, "Water Colour", 1.0, True),  # any case; weight 1 by default
        ])
        # The text encoder gets the prompt without them.
        with mock.patch("generation.loras.services.lora_local_path", lambda lora: "/x"):
            request = generation_requests(job)[0]
        self.assertEqual(request.prompt, "a lighthouse , ")
        self.assertEqual(
            [(ref.name, ref.weight, ref.sha256) for ref in request.loras],
            [("ink", 0.6, self.ink.sha256), ("Water Colour", 1.0, self.watercolor.sha256)],
        )

    def test_picked_and_written_loras_stack_together(self):
        self.post(prompt="x <lora:ink:-0.5>", lora=[self.watercolor.pk], lora_weight=["1.2"])
        job = GenerationJob.objects.get()
        self.assertEqual(self.stack(job), [
            (self.watercolor, "Water Colour", 1.2, False),
            (self.ink, "ink", -0.5, True),
        ])

    def test_an_unknown_name_is_refused_naming_it(self):
        self.assert_refused("prompt", "Unknown LoRA “nope” in <lora:nope:0.5>",
                            prompt="x <lora:nope:0.5>")

    def test_another_teams_lora_is_unknown_by_name_and_by_id(self):
        self.assert_refused("prompt", "Unknown LoRA “secret”", prompt="x <lora:secret>")
        self.assert_refused("loras", "Unknown LoRA", lora=[self.theirs.pk], lora_weight=["1"])

    def test_a_family_mismatch_names_the_lora(self):
        message = ("LoRA “xl-detail” is made for Stable Diffusion XL, but tiny-sd15 is a "
                   "Stable Diffusion 1.x model")
        self.assert_refused("prompt", message, prompt="x <lora:xl-detail:0.5>")
        self.assert_refused("loras", message, lora=[self.xl.pk], lora_weight=["1"])

    def test_a_bad_tag_is_refused(self):
        self.assert_refused("prompt", "“lots” is not a weight", prompt="<lora:ink:lots>")
        self.assert_refused("prompt", "is not closed", prompt="<lora:ink:0.5")

    def test_weights_out_of_range_are_refused(self):
        self.assert_refused("prompt", "The weight of LoRA “ink” is 2.5",
                            prompt="x <lora:ink:2.5>")
        self.assert_refused("loras", "The weight of LoRA “ink” is -3",
                            lora=[self.ink.pk], lora_weight=["-3"])
        self.assert_refused("loras", "“heavy” is not a LoRA weight",
                            lora=[self.ink.pk], lora_weight=["heavy"])

    def test_a_lora_used_twice_is_refused(self):
        self.assert_refused("prompt", "LoRA “ink” is picked and written in the prompt",
                            prompt="x <lora:ink>", lora=[self.ink.pk], lora_weight=["1"])
        self.assert_refused("prompt", "written twice in the prompt",
                            prompt="<lora:ink> <lora:INK:0.2>")

    @override_settings(STUDIO_MAX_LORAS_PER_JOB=2)
    def test_too_many_loras_are_refused(self):
        third = make_lora(self.team, self.editor, "third")
        self.assert_refused(
            "prompt", "3 LoRAs are too many: a job stacks at most 2",
            prompt="x <lora:ink> <lora:water colour>", lora=[third.pk], lora_weight=["1"],
        )
        self.assert_refused(
            "loras", "3 LoRAs are too many: a job stacks at most 2. Remove 1.",
            lora=[third.pk, self.ink.pk, self.watercolor.pk], lora_weight=["1", "1", "1"],
        )

    def test_too_many_by_default_is_more_than_eight(self):
        for n in range(9):
            make_lora(self.team, self.editor, f"l{n}")
        prompt = "x " + " ".join(f"<lora:l{n}>" for n in range(9))
        self.assert_refused("prompt", "9 LoRAs are too many: a job stacks at most 8",
                            prompt=prompt)
        self.post(prompt="x " + " ".join(f"<lora:l{n}>" for n in range(8)))
        self.assertEqual(GenerationJob.objects.get().job_loras.count(), 8)

    def test_the_studio_offers_the_teams_loras_with_their_families(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, "data-lora-picker")
        self.assertContains(response, "js/lora_picker.js")
        self.assertContains(response, "css/loras.css")
        # lora_picker.js offers those whose family is the chosen model's.
        self.assertContains(response, f'<option value="{self.ink.pk}" data-family="sd15">')
        self.assertContains(response, f'<option value="{self.xl.pk}" data-family="sdxl">')
        self.assertContains(response, f'<option value="{self.model.pk}" selected '
                                      'data-family="sd15">')
        self.assertNotContains(response, "secret")  # other teams' never

    def test_duplicate_fills_the_picker_and_keeps_prompt_tags_in_the_prompt(self):
        self.post(prompt="x <lora:ink:0.3>", lora=[self.watercolor.pk], lora_weight=["0.9"])
        job = GenerationJob.objects.get()
        response = self.client.get(reverse("project_studio", args=[self.project.pk]),
                                   {"duplicate": job.pk})
        picker = response.content.decode().split("data-lora-rows", 1)[1].split("</ul>", 1)[0]
        self.assertIn(f'data-lora-id="{self.watercolor.pk}"', picker)
        self.assertIn('value="0.9"', picker)
        self.assertNotIn(f'data-lora-id="{self.ink.pk}"', picker)
        self.assertContains(response, "x &lt;lora:ink:0.3&gt;")

    def test_retry_keeps_the_stack_or_says_which_lora_is_gone(self):
        self.post(prompt="x <lora:ink:0.3>", lora=[self.watercolor.pk], lora_weight=["0.9"])
        job = GenerationJob.objects.get()
        GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
        job.refresh_from_db()
        with mock.patch("generation.services.enqueue_generation"):
            again = job_retry(job=job, user=self.editor)
        self.assertEqual(self.stack(again), self.stack(job))

        doomed = make_lora(self.team, self.editor, "doomed")
        self.post(prompt="y <lora:doomed>")
        failed = GenerationJob.objects.get(prompt="y <lora:doomed>")
        GenerationJob.objects.filter(pk=failed.pk).update(status=JobStatus.FAILED)
        failed.refresh_from_db()
        doomed.delete()
        with self.assertRaisesMessage(ModelNotAllowed, "LoRA “doomed” is no longer in the library"):
            job_retry(job=failed, user=self.editor)

    def test_the_service_refuses_a_stack_the_form_did_not_check(self):
        from generation.loras.services import LoraChoice
        from generation.services import job_create

        params = {**self.params, "model": self.model, "loras": [LoraChoice(self.theirs, 1.0)]}
        with self.assertRaisesMessage(ModelNotAllowed, "Unknown LoRA “secret”"):
            job_create(user=self.editor, project=self.project, params=params)
        params["loras"] = [LoraChoice(self.xl, 1.0)]
        with self.assertRaisesMessage(ModelNotAllowed, "made for Stable Diffusion XL"):
            job_create(user=self.editor, project=self.project, params=params)
        self.assertFalse(GenerationJob.objects.exists())

    def test_a_job_whose_lora_was_deleted_fails_saying_so(self):
        from gpu_workers.requests import GenerationFailed

        doomed = make_lora(self.team, self.editor, "doomed")
        self.post(prompt="x <lora:doomed>")
        job = GenerationJob.objects.get()
        doomed.delete()
        with self.assertRaisesMessage(GenerationFailed, "LoRA “doomed” was removed from the "
                                                        "library before the job ran"):
            generation_requests(job)

    def test_sdxl_loras_pass_with_an_sdxl_model(self):
        from generation.loras.services import lora_stack

        xl_model = DiffusionModel.objects.create(name="xl", source="/m/xl", family="sdxl")
        stack = lora_stack(team=self.team, model=xl_model, picked=[(self.xl.pk, None)],
                           prompt="")
        self.assertEqual([(c.lora, c.weight) for c in stack], [(self.xl, 1.0)])
