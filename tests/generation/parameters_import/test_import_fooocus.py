"""Import: Fooocus's own scheme (JSON in `parameters`, or in a JPEG's EXIF UserComment
with the scheme in MakerNote) is read as Fooocus, not as A1111 text with the JSON in the
prompt; its LoRAs are found in the team's library by their SHA-256."""

import io
import json

from django.test import SimpleTestCase
from django.urls import reverse
from PIL import ExifTags
from PIL import Image as PILImage

from generation.parameters_import import ParameterImportError, read_png_parameters
from tests.base import StudioTestCase
from tests.generation.parameters_import.test_parameters_import import png_bytes, upload
from tests.lora_builders import kohya_lora_bytes, make_lora

# As FooocusMetadataParser.parse_string writes it: sorted keys, seed and resolution as text.
FOOOCUS_METADATA = {
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e689",
    "full_negative_prompt": ["blurry", "(worst quality, low quality:1.4)"],
    "full_prompt": ["a red fox in snow", "cinematic still, highly detailed"],
    "guidance_scale": 4,
    "lora_combined_1": "sd_xl_offset_example-lora_1.0 : 0.1",
    "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]],
    "metadata_scheme": "fooocus",
    "negative_prompt": "blurry",
    "performance": "Speed",
    "prompt": "a red fox in snow",
    "refiner_model": "None",
    "refiner_switch": 0.5,
    "resolution": "(1152, 896)",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "7340582960371542216",
    "sharpness": 2,
    "steps": 30,
    "styles": "['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp']",
    "vae": "Default (model)",
    "version": "Fooocus v2.5.5",
}


def fooocus_png(metadata=FOOOCUS_METADATA):
    return png_bytes({"parameters": json.dumps(metadata), "fooocus_scheme": "fooocus"})


class ImportFooocusTestCase(SimpleTestCase):
    def test_the_json_fills_the_form(self):
        result = read_png_parameters(fooocus_png(), max_bytes=10**6)
        self.assertEqual(result.source_label, "Fooocus v2.5.5")
        self.assertEqual(result.values, {
            "prompt": "a red fox in snow <lora:sd_xl_offset_example-lora_1.0:0.1>",
            "negative_prompt": "blurry", "width": 1152, "height": 896,
            "seed": 7340582960371542216, "steps": 30, "guidance_scale": 4.0,
            "clip_skip": 1, "hires_fix": False,
        })
        self.assertEqual((result.model_name, result.model_hash),
                         ("juggernautXL_v8Rundiffusion", "aeb7e9e689"))
        self.assertEqual(result.lora_hashes, {"sd_xl_offset_example-lora_1.0": "4852686128"})
        self.assertEqual(result.not_applied, [
            "Sampler: DPM++ 2M SDE (Karras) (not available here)",
            "Adm guidance: (1.5, 0.8, 0.3)", "Refiner switch: 0.5", "Sharpness: 2",
            "Styles: ['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp']",
            "Vae: Default (model)",
        ])

    def test_a_fooocus_jpeg_keeps_it_in_the_exif(self):
        exif = PILImage.Exif()
        exif[ExifTags.Base.UserComment] = json.dumps(FOOOCUS_METADATA)
        exif[ExifTags.Base.MakerNote] = "fooocus"
        buffer = io.BytesIO()
        PILImage.new("RGB", (64, 64)).save(buffer, format="JPEG", exif=exif)
        result = read_png_parameters(buffer.getvalue(), max_bytes=10**6)
        self.assertEqual((result.source, result.values["steps"]), ("fooocus", 30))

    def test_unknown_or_malformed_json_is_refused_by_name(self):
        for text, message in [
            ('{"prompt": "x"}', "JSON of an unknown tool (not Fooocus's)"),
            ('{"metadata_scheme": "fooocus", "resolution": "big"}',
             "Resolution: “big” is not a size like (1024, 1024)."),
            ('{"metadata_scheme": "fooocus", "loras": [[1, 2]]}', "LoRA: “[1, 2]” is not"),
            ('{"metadata_scheme": "fooocus", "seed": "x"}', "Seed: “x” is not a whole number."),
            ('{"metadata_scheme": "fooocus",', "The parameters chunk is not valid JSON"),
        ]:
            with self.subTest(text=text), self.assertRaisesMessage(ParameterImportError, message):
                read_png_parameters(png_bytes({"parameters": text}), max_bytes=10**6)


class ImportFooocusViewTestCase(StudioTestCase):
    def test_the_lora_is_found_by_its_sha256_and_the_prompt_has_no_json(self):
        lora = make_lora(self.team, self.editor, "offset", data=kohya_lora_bytes(seed=31))
        metadata = {**FOOOCUS_METADATA, "seed": "12345",
                    "loras": [["sd_xl_offset_example-lora_1.0", 0.1, lora.sha256[:10]]]}
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("parameters_import", args=[self.project.pk]),
            {"model": self.model.pk, "image": upload(fooocus_png(metadata))},
            headers={"HX-Request": "true"},
        )
        self.assertEqual(response.context["form"].initial["prompt"],
                         "a red fox in snow <lora:offset:0.1>")
        self.assertNotIn("LoRA", " ".join(response.context["import_notice"]["not_applied"]))
