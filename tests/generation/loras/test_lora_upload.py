"""Uploading a LoRA: only .safetensors files whose header checks out, under the size cap,
once per team; stored under a server-chosen name with what the header says."""

import hashlib
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from generation.loras.models import Lora
from tests.base import StudioTestCase
from tests.lora_builders import (
    checkpoint_bytes,
    corrupt_header_bytes,
    kohya_lora_bytes,
    kohya_metadata,
    peft_lora_bytes,
    pickle_bytes,
    torch_zip_bytes,
)


class LoraUploadTests(StudioTestCase):
    def setUp(self):
        self.url = reverse("lora_upload", args=[self.team.pk])
        self.client.force_login(self.editor)

    def upload(self, data, filename="watercolor.safetensors", **fields):
        post = {"file": SimpleUploadedFile(filename, data), "default_weight": "1", **fields}
        return self.client.post(self.url, post)

    def assert_refused(self, response, message, field="file"):
        self.assertEqual(response.status_code, 422)
        errors = response.context["form"].errors
        self.assertIn(field, errors)
        self.assertIn(message, " ".join(errors[field]))
        self.assertContains(response, "Fix the highlighted field", status_code=422)
        self.assertFalse(Lora.objects.exists())

    def test_a_kohya_lora_is_stored_with_its_metadata(self):
        data = kohya_lora_bytes("sd15", metadata=kohya_metadata("sd15"))
        response = self.upload(data)

        lora = Lora.objects.get()
        self.assertRedirects(response, lora.get_absolute_url())
        self.assertEqual(lora.team, self.team)
        self.assertEqual(lora.created_by, self.editor)
        self.assertEqual(lora.name, "watercolor_style")  # ss_output_name
        self.assertEqual(lora.family, "sd15")
        self.assertEqual(lora.rank, 8)
        self.assertEqual(lora.resolution, "512x512")
        self.assertEqual(lora.trigger_words, "watercolor, painting, ink wash, 1girl")
        self.assertEqual(lora.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual(lora.size_bytes, len(data))
        self.assertEqual(lora.default_weight, 1.0)
        # A server-chosen name; the bytes as uploaded.
        self.assertRegex(lora.file.name, rf"^loras/{self.team.pk}/[0-9a-f]{{32}}\.safetensors$")
        self.assertNotIn("watercolor", lora.file.name)
        self.assertEqual(Path(lora.file.path).read_bytes(), data)

    def test_the_users_fields_win_over_the_files(self):
        data = peft_lora_bytes("sdxl")
        self.upload(
            data, filename="x.safetensors", name="Ink wash", trigger_words="ink, wash ,, ",
            default_weight="0.7", description="Loose ink style",
        )
        lora = Lora.objects.get()
        self.assertEqual(
            (lora.name, lora.trigger_words, lora.default_weight, lora.family, lora.layout),
            ("Ink wash", "ink, wash", 0.7, "sdxl", "diffusers"),
        )

    def test_a_name_taken_by_the_file_gets_a_number(self):
        self.upload(kohya_lora_bytes(seed=1), filename="style.safetensors")
        self.upload(kohya_lora_bytes(seed=2), filename="style.safetensors")
        self.assertEqual(sorted(Lora.objects.values_list("name", flat=True)), ["style", "style-2"])

    def test_a_name_the_user_chose_twice_is_refused(self):
        self.upload(kohya_lora_bytes(seed=1), filename="a.safetensors", name="Style")
        response = self.upload(kohya_lora_bytes(seed=2), filename="b.safetensors",
                               name="style")
        self.assertEqual(response.status_code, 422)
        errors = " ".join(response.context["form"].errors["name"])
        self.assertIn("already in Alpha's library", errors)
        self.assertEqual(Lora.objects.count(), 1)

    def test_a_name_with_prompt_syntax_characters_is_refused(self):
        response = self.upload(kohya_lora_bytes(), name="ink:wash")
        self.assertEqual(response.status_code, 422)
        self.assertIn("can't contain :", " ".join(response.context["form"].errors["name"]))

    def test_pickle_extensions_are_refused(self):
        for suffix in (".ckpt", ".pt", ".bin"):
            with self.subTest(suffix):
                response = self.upload(pickle_bytes(), filename=f"style{suffix}")
                self.assert_refused(response, f"pickle-based file ({suffix})")

    def test_another_extension_is_refused(self):
        self.assert_refused(self.upload(kohya_lora_bytes(), filename="style.zip"),
                            "is not a .safetensors file")

    def test_a_renamed_pickle_is_refused(self):
        self.assert_refused(self.upload(pickle_bytes()), "pickled PyTorch file")
        self.assert_refused(self.upload(torch_zip_bytes()), "pickled PyTorch file")

    def test_a_truncated_file_is_refused(self):
        self.assert_refused(self.upload(kohya_lora_bytes()[:-64]), "is cut short")

    def test_a_corrupt_header_is_refused(self):
        self.assert_refused(self.upload(corrupt_header_bytes()), "damaged header")

    def test_a_full_checkpoint_is_refused(self):
        self.assert_refused(self.upload(checkpoint_bytes()), "full model, not a LoRA")

    def test_an_empty_file_is_refused(self):
        self.assert_refused(self.upload(b""), "empty")

    @override_settings(STUDIO_MAX_LORA_BYTES=4096)
    def test_a_file_over_the_cap_is_refused_and_not_kept(self):
        data = kohya_lora_bytes()
        self.assertGreater(len(data), 4096)
        response = self.upload(data)
        self.assert_refused(response, "LoRAs up to 4.0 KB are accepted")

    def test_a_duplicate_is_refused_naming_the_one_in_the_library(self):
        data = kohya_lora_bytes()
        self.upload(data, filename="first.safetensors")
        response = self.upload(data, filename="again.safetensors", name="other")
        self.assertEqual(response.status_code, 422)
        self.assertIn(
            "already in Alpha's library as “first” (the same file, by its SHA-256)",
            " ".join(response.context["form"].errors["file"]),
        )
        self.assertEqual(Lora.objects.count(), 1)

    def test_the_same_file_may_be_in_another_teams_library(self):
        data = kohya_lora_bytes()
        self.upload(data)
        self.client.force_login(self.outsider)
        self.client.post(
            reverse("lora_upload", args=[self.other_team.pk]),
            {"file": SimpleUploadedFile("w.safetensors", data), "default_weight": "1"},
        )
        self.assertEqual(Lora.objects.filter(sha256=hashlib.sha256(data).hexdigest()).count(), 2)

    def test_an_unknown_family_must_be_chosen(self):
        from tests.lora_builders import CROSS_DIM

        CROSS_DIM["tiny"] = 32
        try:
            data = peft_lora_bytes("tiny")
        finally:
            del CROSS_DIM["tiny"]
        response = self.upload(data)
        self.assert_refused(response, "choose its family", field="family")
        self.upload(data, family="sd15")
        self.assertEqual(Lora.objects.get().family, "sd15")

    def test_a_family_that_contradicts_the_file_is_refused(self):
        response = self.upload(peft_lora_bytes("sdxl"), family="sd15")
        self.assert_refused(response, "made for Stable Diffusion XL (cross-attention width "
                            "2048), not Stable Diffusion 1.x", field="family")

    def test_a_weight_out_of_range_is_refused(self):
        response = self.upload(kohya_lora_bytes(), default_weight="3")
        self.assertEqual(response.status_code, 422)
        self.assertIn("default_weight", response.context["form"].errors)

    def test_viewers_may_not_upload_and_nothing_is_stored(self):
        self.client.force_login(self.viewer)
        self.assertEqual(self.client.get(self.url).status_code, 403)
        self.assertEqual(self.upload(kohya_lora_bytes()).status_code, 403)
        self.client.force_login(self.outsider)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.upload(kohya_lora_bytes()).status_code, 404)
        self.assertFalse(Lora.objects.exists())

    def test_the_form_is_styled_and_says_the_limit(self):
        response = self.client.get(self.url)
        self.assertContains(response, "css/loras.css")
        self.assertContains(response, 'accept=".safetensors"')
        self.assertContains(response, "1.0 GB")
