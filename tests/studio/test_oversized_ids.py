"""Ids in query strings and form fields that are digits too long for Python's int() (past
4,300 digits it raises ValueError): a 404 or the field's error, never a 500."""

import copy
import json

from django.urls import reverse

from generation.models import JobStatus
from tests.base import StudioTestCase, make_image, make_job
from tests.generation.parameters_import.test_parameters_import import (
    COMFYUI_GRAPH,
    png_bytes,
    upload,
)

HUGE = "9" * 5000


class StudioPageTests(StudioTestCase):
    def setUp(self):
        self.client.force_login(self.editor)
        self.url = reverse("project_studio", args=[self.project.pk])

    def test_duplicate_remix_and_source_of_a_huge_id_are_404(self):
        for name in ("duplicate", "remix", "source"):
            with self.subTest(name):
                response = self.client.get(self.url, {name: HUGE})
                self.assertEqual(response.status_code, 404)

    def test_a_huge_image_id_of_a_duplicated_job_is_ignored(self):
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        response = self.client.get(self.url, {"duplicate": job.pk, "image": HUGE})
        self.assertEqual(response.status_code, 200)

    def test_an_outsider_still_gets_a_404(self):
        self.client.force_login(self.outsider)
        job = make_job(self.project, self.editor, self.model, status=JobStatus.FINISHED)
        self.assertEqual(self.client.get(self.url, {"duplicate": job.pk}).status_code, 404)


class GenerateFormTests(StudioTestCase):
    def test_a_huge_model_id_is_an_unknown_model(self):
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("job_create", args=[self.project.pk]),
            {"prompt": "a lighthouse", "model": HUGE, "steps": 4, "guidance_scale": 7,
             "width": 64, "height": 64},
        )
        self.assertEqual(response.status_code, 422)
        self.assertIn("model", response.context["form"].errors)


class ImageRemixTests(StudioTestCase):
    def test_a_huge_project_id_is_404(self):
        image = make_image(make_job(self.project, self.editor, self.model))
        self.client.force_login(self.editor)
        response = self.client.get(reverse("image_remix", args=[image.pk]), {"project": HUGE})
        self.assertEqual(response.status_code, 404)


class LoraPickTests(StudioTestCase):
    def test_a_huge_lora_id_is_an_unknown_lora(self):
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("job_create", args=[self.project.pk]),
            {"prompt": "a lighthouse", "model": self.model.pk, "steps": 4, "guidance_scale": 7,
             "width": 64, "height": 64, "lora": [HUGE], "lora_weight": ["1"]},
        )
        self.assertEqual(response.status_code, 422)
        self.assertIn("Unknown LoRA", " ".join(response.context["form"].errors["loras"]))


class CollectionTests(StudioTestCase):
    def setUp(self):
        from gallery.collections.models import Collection, CollectionItem

        self.image = make_image(make_job(self.project, self.editor, self.model))
        self.board = Collection.objects.create(
            team=self.team, project=self.project, name="Board", created_by=self.editor
        )
        CollectionItem.objects.create(collection=self.board, image=self.image, position=0)
        self.client.force_login(self.editor)

    def test_a_huge_drop_target_is_refused(self):
        url = reverse("collection_image_place", args=[self.board.pk, self.image.pk])
        response = self.client.post(url, {"target": HUGE, "place": "before"})
        self.assertLess(response.status_code, 500)
        self.assertGreaterEqual(response.status_code, 400)

    def test_a_huge_contributor_id_is_refused(self):
        url = reverse("collection_contributor", args=[self.board.pk])
        response = self.client.post(url, {"user": HUGE}, follow=True)
        self.assertContains(response, "Contributor: choose a member of the team.")


class ModerationTests(StudioTestCase):
    def setUp(self):
        self.owner.is_superuser = True
        self.owner.save()
        self.client.force_login(self.owner)

    def test_a_huge_case_id_is_ignored(self):
        response = self.client.post(reverse("moderation_case_bulk"), {"cases": [HUGE]})
        self.assertLess(response.status_code, 500)

    def test_a_huge_suspended_user_id_is_404(self):
        response = self.client.post(reverse("moderation_suspensions"), {"user": HUGE})
        self.assertEqual(response.status_code, 404)


class ComfyUIImportTests(StudioTestCase):
    def test_a_node_of_a_huge_id_is_read_as_any_other(self):
        graph = copy.deepcopy(COMFYUI_GRAPH)
        graph[HUGE] = copy.deepcopy(graph["3"])  # a second KSampler, named by a huge id
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("parameters_import", args=[self.project.pk]),
            {"image": upload(png_bytes({"prompt": json.dumps(graph)}))},
        )
        self.assertEqual(response.status_code, 200)
