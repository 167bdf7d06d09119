"""64-bit seeds, as ComfyUI has them: the form takes any seed up to 2**64 - 1, the job and
image rows keep it, the worker's generator runs it and the infotext records it."""

import json
from unittest import mock

import pytest
from django.urls import reverse
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import job_execute
from generation.models import DiffusionModel, GenerationJob
from generation.seeds import MAX_SEED
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import GenerateFormTestCase

LARGEST = 2**64 - 1
ABOVE_SIGNED = 2**63 + 5  # stored below zero in the signed column


class SeedFormTestCase(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {
            "prompt": "a lighthouse", "model": self.model.pk, "steps": 10,
            "guidance_scale": 7, "width": 64, "height": 64,
        }

    def test_seeds_up_to_2_64_are_kept_and_read_back(self):
        for seed in (LARGEST, ABOVE_SIGNED, 2**32):
            with self.subTest(seed=seed):
                self.post(seed=seed, variation_strength=0.2, variation_seed=seed)
                job = GenerationJob.objects.latest("pk")
                self.assertEqual((job.seed, job.variation_seed), (seed, seed))
                self.assertEqual(GenerationJob.objects.get(seed=seed), job)
                job.delete()

    def test_a_batch_count_wraps_past_the_largest_seed(self):
        self.post(seed=LARGEST, batch_count=2)
        self.assertEqual(
            sorted(GenerationJob.objects.values_list("seed", flat=True)), [0, LARGEST]
        )

    def test_out_of_range(self):
        message = f"Seed must be from 0 to {MAX_SEED}."
        self.assert_refused("seed", message, seed=2**64)
        self.assert_refused("variation_seed", f"Variation seed must be from 0 to {MAX_SEED}.",
                            variation_seed=2**64, variation_strength=0.2)

    def test_an_outsider_cannot_queue_a_seed_in_the_project(self):
        self.client.force_login(self.outsider)
        response = self.post(seed=LARGEST)
        self.assertEqual(response.status_code, 404)
        self.assertFalse(GenerationJob.objects.exists())


@pytest.mark.django_db
def test_the_worker_runs_a_64_bit_seed_and_the_image_records_it(tiny_model_dir):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    for seed in (LARGEST, ABOVE_SIGNED):
        job = GenerationJob.objects.create(
            project=project, created_by=user, model=model, prompt="a red fox", steps=2,
            guidance_scale=6.5, width=64, height=48, seed=seed, batch_size=2,
        )
        with mock.patch("generation.execution.publish"):
            job_execute(job_id=job.pk)
        made = Image.objects.filter(job=job).order_by("pk")
        assert sorted(image.seed for image in made) == sorted([seed, (seed + 1) % 2**64])
        first = next(image for image in made if image.seed == seed)
        png = PILImage.open(first.file)
        assert f"Seed: {seed}," in png.info["parameters"]
        assert json.loads(png.info["studio"])["seed"] == seed
