"""Import: an InvokeAI image (its `invokeai_metadata` chunk, CoreMetadataInvocation's
JSON) fills the form; its LoRAs are looked up in the team's library by name."""

import json

from django.test import SimpleTestCase
from django.urls import reverse

from generation.parameters_import import ParameterImportError, read_png_parameters
from tests.base import StudioTestCase
from tests.generation.parameters_import.test_parameters_import import png_bytes, upload
from tests.lora_builders import kohya_lora_bytes, make_lora

# As InvokeAI 5 writes it (model_dump(exclude_none=True) plus app_version).
INVOKEAI_METADATA = {
    "generation_mode": "txt2img",
    "positive_prompt": "a lighthouse at dusk",
    "negative_prompt": "blurry",
    "width": 512,
    "height": 768,
    "seed": 3521547961,
    "rand_device": "cpu",
    "cfg_scale": 7.5,
    "cfg_rescale_multiplier": 0,
    "steps": 30,
    "scheduler": "dpmpp_2m_k",
    "clip_skip": 1,
    "model": {"key": "3f1c", "hash": "blake3:4b8e", "name": "Tiny SD", "base": "sd-1",
              "type": "main"},
    "loras": [{"model": {"key": "9a0d", "hash": "blake3:77aa", "name": "ink", "base": "sd-1",
                         "type": "lora"}, "weight": 0.75}],
    "vae": {"key": "v1", "hash": "blake3:11", "name": "sd-vae-ft-mse", "base": "sd-1",
            "type": "vae"},
    "app_version": "5.4.2",
}


def invokeai_png(metadata=INVOKEAI_METADATA):
    return png_bytes({"invokeai_metadata": json.dumps(metadata)})


class ParseInvokeAITestCase(SimpleTestCase):
    def test_the_core_metadata_fills_the_form(self):
        result = read_png_parameters(invokeai_png(), max_bytes=10**6)
        self.assertEqual(result.source_label, "InvokeAI 5.4.2")
        self.assertEqual(result.values, {
            "prompt": "a lighthouse at dusk <lora:ink:0.75>", "negative_prompt": "blurry",
            "width": 512, "height": 768, "seed": 3521547961, "steps": 30,
            "guidance_scale": 7.5, "sampler": "DPM++ 2M Karras", "clip_skip": 2,
            "hires_fix": False,
        })
        self.assertEqual(result.model_name, "Tiny SD")
        self.assertEqual(result.lora_hashes, {"ink": ""})
        self.assertEqual(result.not_applied, ["Vae: sd-vae-ft-mse"])

    def test_invokeai_3_names_img2img_and_plain_schedulers(self):
        metadata = {**INVOKEAI_METADATA, "generation_mode": "img2img", "strength": 0.6,
                    "scheduler": "euler_a", "clip_skip": 0,
                    "model": {"model_name": "Tiny SD", "base_model": "sd-1"},
                    "loras": [{"lora": {"model_name": "ink", "base_model": "sd-1"},
                               "weight": 1}]}
        del metadata["vae"]
        result = read_png_parameters(invokeai_png(metadata), max_bytes=10**6)
        self.assertEqual((result.values["sampler"], result.values["clip_skip"]), ("Euler a", 1))
        self.assertEqual(result.values["strength"], 0.6)
        self.assertEqual(result.values["prompt"], "a lighthouse at dusk <lora:ink:1>")
        self.assertEqual(result.model_name, "Tiny SD")
        self.assertIn("Source image", result.reported_labels())

    def test_malformed_metadata_is_refused_by_name(self):
        for metadata, message in [
            ("{oops", "The InvokeAI metadata is not valid JSON"),
            ("[1]", "The InvokeAI metadata is not a JSON object."),
            ({"steps": "many"}, "Steps: “many” is not a whole number."),
            ({"loras": {"a": 1}}, "loras is not a list"),
            ({"loras": [{"weight": 1}]}, "A LoRA in the InvokeAI metadata has no name."),
            ({"positive_prompt": 5}, "Positive prompt is not text"),
        ]:
            text = metadata if isinstance(metadata, str) else json.dumps(metadata)
            with self.subTest(metadata=metadata), self.assertRaisesMessage(
                ParameterImportError, message
            ):
                read_png_parameters(png_bytes({"invokeai_metadata": text}), max_bytes=10**6)


class ImportInvokeAIViewTestCase(StudioTestCase):
    def post(self, user, data):
        self.client.force_login(user)
        return self.client.post(
            reverse("parameters_import", args=[self.project.pk]),
            {"model": self.model.pk, "image": upload(data)}, headers={"HX-Request": "true"},
        )

    def test_the_teams_lora_of_that_name_applies(self):
        make_lora(self.team, self.editor, "ink", data=kohya_lora_bytes(seed=21))
        response = self.post(self.editor, invokeai_png())
        self.assertEqual(response.status_code, 200)
        form = response.context["form"]
        self.assertEqual(form.initial["prompt"], "a lighthouse at dusk <lora:ink:0.75>")
        self.assertEqual(form.initial["seed"], 3521547961)
        notice = response.context["import_notice"]
        self.assertNotIn("LoRA: ink (not in your team's library)", notice["not_applied"])
        self.assertIn("Imported from image.png (InvokeAI 5.4.2)", notice["title"])

    def test_an_outsider_cannot_import_into_the_project(self):
        response = self.post(self.outsider, invokeai_png())
        self.assertEqual(response.status_code, 404)
