"""Seeds as AUTOMATIC1111 users expect: -1 is random, the studio has random and reuse
buttons, and any image's seed is one click away ("Use seed" on its page and in the
lightbox of the grids that may show it). The image page names the sampler a model's own
scheduler ran as."""

from django.urls import reverse

from gallery.models import Image
from generation.models import GenerationJob
from tests.base import GenerateFormTestCase, StudioTestCase, make_image, make_job


class RandomSeedTests(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {
            "prompt": "a lighthouse", "model": self.model.pk, "steps": 10,
            "guidance_scale": 7, "width": 64, "height": 64,
        }

    def test_minus_one_is_a_random_seed(self):
        for _ in range(4):
            self.post(seed=-1)
        seeds = set(GenerationJob.objects.values_list("seed", flat=True))
        self.assertGreater(len(seeds), 1)
        self.assertTrue(all(0 <= seed < 2**32 for seed in seeds))

    def test_other_seeds_below_zero_are_still_refused(self):
        self.assert_refused("seed", "Seed must be from 0 to", seed=-2)

    def test_the_studio_has_random_and_reuse_buttons(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, "data-random-seed")
        self.assertContains(response, "data-reuse-seed")
        self.assertContains(response, "Empty or -1 for a random seed")


class UseSeedTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        job = make_job(cls.project, cls.editor, cls.model, seed=2**64 - 7)
        cls.image = make_image(job)
        Image.objects.filter(pk=cls.image.pk).update(
            seed=2**64 - 7,
            parameters="a lighthouse\nSteps: 4, Sampler: PLMS, Schedule type: Automatic, "
            "CFG scale: 7, Seed: 18446744073709551609, Size: 64x64, Model: tiny-sd15",
        )

    def test_the_image_page_offers_its_seed_and_names_the_models_sampler(self):
        self.client.force_login(self.viewer)
        response = self.client.get(self.image.get_absolute_url())
        self.assertContains(response, 'data-use-seed="18446744073709551609"')
        self.assertContains(response, "PLMS <span class=\"muted\">(the model's own scheduler)")
        self.assertNotContains(response, "The model&#x27;s own scheduler")

    def test_team_grids_carry_each_images_seed_for_the_lightbox(self):
        self.client.force_login(self.editor)
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, 'data-seed="18446744073709551609"')
        self.assertContains(response, "data-lightbox-use-seed")

    def test_other_users_cant_see_the_seed(self):
        self.client.force_login(self.outsider)
        response = self.client.get(self.image.get_absolute_url())
        self.assertEqual(response.status_code, 404)
        self.assertNotContains(response, "18446744073709551609", status_code=404)
