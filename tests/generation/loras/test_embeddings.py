"""Textual-inversion embeddings: the team library (members see it, editors add and delete,
the LoRA upload rules, the family from the vectors' width) and a job whose prompt names
one, run on the tiny model through the worker's code path."""

import hashlib
import io
import json
from unittest import mock

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage
from safetensors.torch import save

from gallery.models import Image
from generation.loras.embeddings.models import Embedding
from generation.models import DiffusionModel
from tests.base import StudioTestCase, make_job


def embedding_bytes(**shapes):
    generator = torch.Generator().manual_seed(3)
    return save({name: torch.randn(shape, generator=generator) for name, shape in shapes.items()})


def upload(name="easyneg.safetensors", **shapes):
    return SimpleUploadedFile(name, embedding_bytes(**(shapes or {"emb_params": (2, 768)})))


class EmbeddingLibraryTestCase(StudioTestCase):
    def setUp(self):
        self.url = reverse("team_embeddings", args=[self.team.pk])
        self.upload_url = reverse("embedding_upload", args=[self.team.pk])

    def post_upload(self, user=None, **data):
        self.client.force_login(user or self.editor)
        return self.client.post(self.upload_url, {"file": upload(), **data})

    def test_members_see_the_library_and_editors_the_upload_form(self):
        embedding = Embedding.objects.create(
            team=self.team, name="easyneg", sha256="ab" * 32, size_bytes=10, family="sd15",
            layout="a1111", vectors=2,
        )
        self.client.force_login(self.viewer)
        response = self.client.get(self.url)
        self.assertContains(response, "easyneg")
        self.assertContains(response, embedding.short_hash())
        self.assertNotContains(response, self.upload_url)
        self.client.force_login(self.editor)
        self.assertContains(self.client.get(self.url), self.upload_url)

    def test_outsiders_get_404(self):
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.post_upload(self.outsider).status_code, 404)
        self.assertFalse(Embedding.objects.exists())

    def test_viewers_may_not_upload(self):
        self.assertIn(self.post_upload(self.viewer).status_code, (403, 404))
        self.assertFalse(Embedding.objects.exists())

    def test_an_a1111_embedding_is_added_with_its_family_and_vectors(self):
        response = self.post_upload()
        self.assertRedirects(response, self.url)
        embedding = Embedding.objects.get()
        self.assertEqual(
            (embedding.name, embedding.family, embedding.layout, embedding.vectors),
            ("easyneg", "sd15", "a1111", 2),
        )
        self.assertEqual(embedding.sha256, hashlib.sha256(embedding.file.read()).hexdigest())
        self.assertRegex(embedding.file.name, rf"^embeddings/{self.team.pk}/[0-9a-f]{{32}}")

    def test_diffusers_sd2_and_sdxl_layouts(self):
        self.client.force_login(self.editor)
        for name, shapes, family in [
            ("token", {"<tok>": (1024,)}, "sd2"),
            ("xl", {"clip_l": (3, 768), "clip_g": (3, 1280)}, "sdxl"),
        ]:
            self.client.post(self.upload_url, {"file": upload(f"{name}.safetensors", **shapes)})
            self.assertEqual(Embedding.objects.get(name=name).family, family)

    def assert_refused(self, field, message, **data):
        response = self.client.post(self.upload_url, data)
        self.assertEqual(response.status_code, 422)
        self.assertIn(message, " ".join(response.context["form"].errors[field]))
        self.assertFalse(Embedding.objects.exists())

    def test_bad_files_are_refused_with_the_reason(self):
        self.client.force_login(self.editor)
        self.assert_refused("file", "fits no model family", file=upload(emb_params=(2, 512)))
        self.assert_refused(
            "file", "pickle-based", file=SimpleUploadedFile("e.pt", b"\x80\x04junk")
        )
        self.assert_refused(
            "file",
            "is cut short",
            file=SimpleUploadedFile("e.safetensors", embedding_bytes(emb_params=(2, 768))[:-40]),
        )
        lora = {"a.lora_down.weight": (4, 768), "a.lora_up.weight": (768, 4)}
        self.assert_refused("file", "Is it a LoRA?", file=upload(**lora))
        self.assert_refused(
            "file", "SDXL's are 1280", file=upload(clip_l=(1, 768), clip_g=(1, 1024))
        )
        self.assert_refused("file", "at most 75", file=upload(emb_params=(80, 768)))

    def test_names_must_be_one_unused_word(self):
        self.post_upload()
        response = self.client.post(
            self.upload_url, {"file": upload(emb_params=(1, 768)), "name": "two words"}
        )
        self.assertIn("not one word", " ".join(response.context["form"].errors["name"]))
        response = self.client.post(
            self.upload_url, {"file": upload(emb_params=(1, 768)), "name": "EasyNeg"}
        )
        self.assertIn("already an embedding", " ".join(response.context["form"].errors["name"]))
        response = self.client.post(self.upload_url, {"file": upload(), "name": "again"})
        self.assertIn("already in Alpha's", " ".join(response.context["form"].errors["file"]))
        self.assertEqual(Embedding.objects.count(), 1)

    def test_editors_delete_and_others_may_not(self):
        self.post_upload()
        embedding = Embedding.objects.get()
        delete_url = reverse("embedding_delete", args=[embedding.pk])
        for user in (self.viewer, self.outsider):
            self.client.force_login(user)
            self.assertIn(self.client.post(delete_url).status_code, (403, 404))
        self.assertTrue(Embedding.objects.exists())
        self.client.force_login(self.editor)
        self.assertRedirects(self.client.post(delete_url), self.url)
        self.assertFalse(Embedding.objects.exists())


def test_names_are_found_as_whole_words_case_sensitive():
    from generation.loras.embeddings.models import EMBEDDING_NAME_RE

    words = set(EMBEDDING_NAME_RE.findall("a cat, easyneg (bad-hands:1.2) EasyNegX"))
    assert {"easyneg", "bad-hands"} <= words and "EasyNeg" not in words


@pytest.mark.django_db
def test_a_prompt_naming_an_embedding_runs_with_it(tiny_model_dir):
    from studio.accounts.models import Membership, Project, Role, Team, User

    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    # The tiny model's text encoder is 32 wide; made here, not uploaded (768 or 1024 only).
    data = embedding_bytes(emb_params=(2, 32))
    embedding = Embedding(
        team=team, name="mystyle", sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data), family="sd15", layout="a1111", vectors=2,
    )
    embedding.file.save("mystyle.safetensors", ContentFile(data))

    def run(prompt):
        job = make_job(project, user, model, prompt=prompt, steps=3, width=64, height=64, seed=9)
        with mock.patch("generation.execution.publish"):
            from generation.execution import job_execute

            job_execute(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == "finished", job.error
        image = Image.objects.get(job=job)
        return image, np.asarray(PILImage.open(io.BytesIO(image.file.read())))

    styled, styled_pixels = run("a cat, mystyle")
    # Another word (not an embedding) as the prompt's text is read by the text encoder.
    _, plain_pixels = run("a cat, mystylo")
    assert not np.array_equal(styled_pixels, plain_pixels)
    assert f'TI hashes: "mystyle: {embedding.short_hash()}"' in styled.parameters
    spec = json.loads(PILImage.open(styled.file).info["studio"])
    assert spec["embeddings"] == [{"name": "mystyle", "sha256": embedding.sha256}]

    # Once the embedding is gone, the word is text again and the image is the plain one.
    embedding.delete()
    _, unstyled_pixels = run("a cat, mystyle")
    assert not np.array_equal(styled_pixels, unstyled_pixels)
