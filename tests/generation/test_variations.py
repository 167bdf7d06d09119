"""Variations from the studio: close variations of an image, recorded as A1111 does."""

from django.urls import reverse

from generation.models import GenerationJob, JobStatus
from tests.base import GenerateFormTestCase, make_image, make_job


class VariationsFormTestCase(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {
            "prompt": "a lighthouse", "model": self.model.pk, "steps": 10,
            "guidance_scale": 7, "width": 64, "height": 64, "seed": 10,
        }

    def test_a_variation_strength_picks_a_variation_seed_when_none_is_given(self):
        self.post(variation_strength=0.3)
        job = GenerationJob.objects.get()
        assert (job.seed, job.variation_strength) == (10, 0.3)
        assert 0 <= job.variation_seed < 2**32

    def test_without_a_strength_nothing_is_varied(self):
        self.post(variation_seed=5)
        assert GenerationJob.objects.get().variation_strength == 0

    def test_out_of_range(self):
        self.assert_refused("variation_strength", "Variation strength must be from 0 to 1.",
                            variation_strength=2)

    def test_not_with_a_source_image(self):
        source = make_image(make_job(self.project, self.owner, self.model))
        self.assert_refused("variation_strength", "Variations are for text to image",
                            variation_strength=0.3, source_image=source.pk)

    def test_the_variations_link_fills_four_variations_of_that_image(self):
        origin = make_job(self.project, self.owner, self.model, status=JobStatus.FINISHED,
                          seed=77, batch_size=2)
        image = make_image(origin)
        page = self.client.get(reverse("image_detail", args=[image.pk]))
        self.assertContains(page, f"?duplicate={origin.pk}&amp;image={image.pk}&amp;variations=1")
        response = self.client.get(
            reverse("project_studio", args=[self.project.pk]),
            {"duplicate": origin.pk, "image": image.pk, "variations": "1"},
        )
        initial = response.context["form"].initial
        assert (initial["seed"], initial["batch_size"], initial["variation_strength"]) == (
            image.seed, 4, 0.25
        )
