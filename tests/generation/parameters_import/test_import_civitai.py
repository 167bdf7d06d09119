"""Import of Civitai images: a JPEG whose EXIF UserComment holds A1111's infotext with
Civitai's `Civitai resources` and `Hashes`; they pick the team's library model and LoRAs
(by hash first, parameters_import.library, then by name)."""

import hashlib
import io
import json

from django.test import SimpleTestCase
from django.urls import reverse
from PIL import ExifTags
from PIL import Image as PILImage

from generation.models import DiffusionModel
from generation.parameters_import import ParameterImportError, read_png_parameters
from tests.base import StudioTestCase
from tests.generation.parameters_import.test_parameters_import import upload
from tests.lora_builders import kohya_lora_bytes, make_lora

CHECKPOINT_SHA256 = hashlib.sha256(b"dreamshaper 8").hexdigest()


def civitai_infotext(*, hashes, resources, prompt="a castle on a hill"):
    return (
        f"{prompt}\nNegative prompt: blurry\n"
        "Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 2841573290, "
        "Size: 512x768, Clip skip: 2, Created Date: 2024-05-10T04:17:09.5370843Z, "
        f"Civitai resources: {json.dumps(resources, separators=(',', ':'))}, "
        'Civitai metadata: {"remixOfId":123}, '
        f"Hashes: {json.dumps(hashes, separators=(',', ':'))}"
    )


def civitai_jpeg(text):
    exif = PILImage.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = (
        b"UNICODE\0" + text.encode("utf-16-be")
    )
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 96)).save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


RESOURCES = [
    {"type": "checkpoint", "modelVersionId": 128713, "modelName": "DreamShaper",
     "modelVersionName": "8"},
    {"type": "lora", "weight": 0.6, "modelVersionId": 87153, "modelName": "ink wash",
     "modelVersionName": "v1.0"},
    {"type": "lora", "weight": 0.4, "modelVersionId": 62833, "modelName": "paper cut",
     "modelVersionName": "v2"},
    {"type": "embed", "modelVersionId": 9208, "modelName": "EasyNegative",
     "modelVersionName": "EasyNegative"},
]


class ParseCivitaiTestCase(SimpleTestCase):
    def test_resources_and_hashes_are_read_for_the_library(self):
        text = civitai_infotext(
            hashes={"model": CHECKPOINT_SHA256[:10], "lora:ink wash": "0123456789ab",
                    "embed:EasyNegative": "c74b4e810b"},
            resources=RESOURCES,
        )
        result = read_png_parameters(civitai_jpeg(text), max_bytes=10**6)
        self.assertEqual((result.model_name, result.model_hash),
                         ("DreamShaper", CHECKPOINT_SHA256[:10]))
        self.assertEqual(result.values["prompt"],
                         "a castle on a hill <lora:ink wash:0.6> <lora:paper cut:0.4>")
        self.assertEqual(result.lora_hashes, {"ink wash": "0123456789ab", "paper cut": ""})
        self.assertEqual(result.values["sampler"], "DPM++ 2M Karras")
        self.assertEqual(result.not_applied, [])

    def test_a_lora_the_prompt_calls_is_not_called_twice(self):
        text = civitai_infotext(hashes={}, resources=RESOURCES[1:2],
                                prompt="a castle <lora:Ink Wash:0.9>")
        result = read_png_parameters(civitai_jpeg(text), max_bytes=10**6)
        self.assertEqual(result.values["prompt"], "a castle <lora:Ink Wash:0.9>")

    def test_malformed_fields_are_refused_by_name(self):
        for hashes, resources, message in [
            ([], [], "Hashes: not a JSON object."),
            ({"model": 5}, [], "Hashes: the hash of model is not text."),
            ({}, {"a": 1}, "Civitai resources: not a JSON list."),
            ({}, [{"type": "lora"}], "is not a resource with a modelName"),
            ({}, [{"type": "lora", "modelName": "x", "weight": "lots"}],
             "Civitai resource x: “lots” is not a number."),
        ]:
            text = civitai_infotext(hashes=hashes, resources=resources)
            with self.subTest(message=message), self.assertRaisesMessage(
                ParameterImportError, message
            ):
                read_png_parameters(civitai_jpeg(text), max_bytes=10**6)
        hostile = "x\nSteps: 5, Hashes: " + "[" * 20_000
        with self.assertRaisesMessage(ParameterImportError, "The Hashes field is not valid JSON"):
            read_png_parameters(civitai_jpeg(hostile), max_bytes=10**6)


class ImportCivitaiViewTestCase(StudioTestCase):
    def post(self, user, text):
        self.client.force_login(user)
        return self.client.post(
            reverse("parameters_import", args=[self.project.pk]),
            {"model": self.model.pk,
             "image": upload(civitai_jpeg(text), name="civitai.jpeg", content_type="image/jpeg")},
            headers={"HX-Request": "true"},
        )

    def test_the_teams_model_and_loras_are_picked_by_hash_then_name(self):
        model = DiffusionModel.objects.create(
            name="DS 8", source="/models/ds8.safetensors", sha256=CHECKPOINT_SHA256
        )
        ink = make_lora(self.team, self.editor, "ink", data=kohya_lora_bytes(seed=51))
        make_lora(self.team, self.editor, "paper cut", data=kohya_lora_bytes(seed=52))
        text = civitai_infotext(
            hashes={"model": CHECKPOINT_SHA256[:10], "lora:ink wash": ink.addnet_hash[:12]},
            resources=RESOURCES[:3] + [{"type": "lora", "weight": 1, "modelName": "neon",
                                        "modelVersionId": 5, "modelVersionName": "1"}],
        )
        response = self.post(self.editor, text)
        initial = response.context["form"].initial
        self.assertEqual(initial["model"], model.pk)
        self.assertEqual(
            initial["prompt"],
            "a castle on a hill <lora:ink:0.6> <lora:paper cut:0.4> <lora:neon:1>",
        )
        self.assertEqual(response.context["import_notice"]["not_applied"],
                         ["LoRA: neon (not in your team's library)"])

    def test_an_outsider_cannot_import(self):
        text = civitai_infotext(hashes={}, resources=RESOURCES)
        self.assertEqual(self.post(self.outsider, text).status_code, 404)
