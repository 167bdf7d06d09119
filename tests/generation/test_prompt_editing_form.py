"""Prompt editing and alternation the workers would refuse as too costly to parse are field
errors when the job is asked for, not failed jobs: as typed, and as a wildcard expands."""

from django.urls import reverse

from generation.models import GenerationJob
from generation.wildcards.models import Wildcard
from tests.base import GenerateFormTestCase

# 63 brackets and colons of weights and 4 of an edit: past MAX_SCHEDULE_MARKS (64).
TANGLED = "(a:1.1) " * 21 + "[cat:dog:0.5]"


class PromptEditingFormTestCase(GenerateFormTestCase):
    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("job_create", args=[self.project.pk])
        self.params = {"prompt": "a [cat:dog:0.5] on a [red|blue] (rug:1.2)",
                       "model": self.model.pk, "steps": 10, "guidance_scale": 7.0,
                       "width": 64, "height": 64, "seed": 3}

    def test_editing_and_alternation_are_queued_as_typed(self):
        self.assertEqual(self.post().status_code, 200)
        self.assertEqual(GenerationJob.objects.get().prompt, self.params["prompt"])

    def test_a_tangle_of_editing_is_refused_on_its_field(self):
        self.assert_refused("prompt", "at most 64 are allowed", prompt=TANGLED)
        self.assert_refused("negative_prompt", "at most 64 are allowed", negative_prompt=TANGLED)

    def test_so_is_one_a_wildcard_makes(self):
        Wildcard.objects.create(team=self.team, name="tangle", values=TANGLED)
        self.assert_refused("prompt", "at most 64 are allowed", prompt="a __tangle__")
