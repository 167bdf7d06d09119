"""Import: an image's embedded parameters fill the generate form (studio, A1111, ComfyUI);
what the form cannot apply is listed; bad files get a 422 with a clear message, no job."""

import hashlib
import io
import json
import time
import warnings
from unittest import mock

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory, SimpleTestCase, override_settings
from django.urls import reverse
from PIL import ExifTags, PngImagePlugin
from PIL import Image as PILImage

from gallery.services import image_create_from_generation
from generation.models import DiffusionModel, GenerationJob, JobMode
from generation.parameters_import import (
    ParameterImportError,
    parse_a1111_infotext,
    parse_comfyui_prompt,
    read_png_parameters,
)
from generation.views import ImportUploadLimit
from gpu_workers.requests import GenerationResult
from tests.base import StudioTestCase, make_job
from tests.lora_builders import kohya_lora_bytes, make_lora

A1111_INFOTEXT = (
    "a castle, (masterpiece:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
    'Denoising strength: 0.5, Clip skip: 2, Lora hashes: "foo: abc123", Version: v1.10.1'
)

# ComfyUI's default workflow, API format, with a CLIP skip and a LoRA added.
COMFYUI_GRAPH = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 1566802087,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd15/tiny-sd15.safetensors"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 640, "batch_size": 2},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "beautiful scenery, glass bottle, galaxy", "clip": ["11", 0]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["11", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "paper_cut.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.8,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    },
    "11": {
        "class_type": "CLIPSetLastLayer",
        "inputs": {"stop_at_clip_layer": -2, "clip": ["10", 1]},
    },
}


def png_bytes(text_chunks=None, size=(16, 16)):
    info = PngImagePlugin.PngInfo()
    for key, value in (text_chunks or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (30, 60, 90)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def upload(data, name="image.png", content_type="image/png"):
    return SimpleUploadedFile(name, data, content_type=content_type)


class ParseA1111TestCase(SimpleTestCase):
    def test_the_example_fills_every_field_and_reports_the_rest(self):
        result = parse_a1111_infotext(A1111_INFOTEXT)
        self.assertEqual(result.source, "a1111")
        self.assertEqual(
            result.values,
            {
                "prompt": "a castle, (masterpiece:1.2)",
                "negative_prompt": "blurry, lowres",
                "steps": 30,
                "sampler": "DPM++ 2M Karras",
                "guidance_scale": 7.0,
                "seed": 1234,
                "width": 512,
                "height": 768,
                "clip_skip": 2,
                "shift": None,  # no shift: the model's default
                "batch_size": 1,
                "hires_fix": False,
                # Without a hires pass, A1111's denoising strength is img2img's.
                "strength": 0.5,
            },
        )
        self.assertEqual(result.model_name, "v1-5-pruned-emaonly")
        self.assertEqual(result.version, "v1.10.1")
        # Hashes are for the library lookup (the view), not notes of their own.
        self.assertEqual(result.lora_hashes, {"foo": "abc123"})
        self.assertEqual(result.model_hash, "6ce0161689")
        self.assertFalse(any("hash" in note for note in result.not_applied))
        self.assertTrue(any(note.startswith("Source image") for note in result.not_applied))

    def test_quoted_values_may_hold_commas_colons_quotes_and_newlines(self):
        result = parse_a1111_infotext(
            'a cat\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64, '
            'Lora hashes: "foo: abc, bar: def", Wildcard prompt: "a \\"b\\", c\\nd", '
            "Model: my, model"
        )
        self.assertEqual(result.lora_hashes, {"foo": "abc", "bar": "def"})
        self.assertIn('Wildcard prompt: a "b", c d', result.not_applied)
        # An unquoted comma stays with its value rather than becoming a bogus field.
        self.assertEqual(result.model_name, "my, model")

    def test_prompts_may_span_lines_and_the_negative_prompt_may_be_missing(self):
        result = parse_a1111_infotext(
            "first line, red\nsecond line: blue\nthird\n"
            "Steps: 12, Sampler: Euler, CFG scale: 4.5, Seed: 7, Size: 640x448"
        )
        self.assertEqual(result.values["prompt"], "first line, red\nsecond line: blue\nthird")
        self.assertEqual(result.values["negative_prompt"], "")
        self.assertEqual(result.values["sampler"], "Euler")
        self.assertEqual((result.values["width"], result.values["height"]), (640, 448))

    def test_negative_prompt_may_span_lines(self):
        result = parse_a1111_infotext(
            "sky\nNegative prompt: ugly,\nbad hands\nSteps: 5, Seed: 1, Size: 64x64"
        )
        self.assertEqual(result.values["prompt"], "sky")
        self.assertEqual(result.values["negative_prompt"], "ugly,\nbad hands")

    def test_a_prompt_line_that_looks_like_fields_stays_in_the_prompt(self):
        result = parse_a1111_infotext("style: watercolor, mood: calm, light: soft")
        self.assertEqual(result.values["prompt"], "style: watercolor, mood: calm, light: soft")
        self.assertEqual(result.not_applied, [
            "Settings: none in the image: only the prompts were imported"
        ])

    def test_sampler_names(self):
        def sampler(name, schedule=None):
            text = f"x\nSteps: 5, Sampler: {name}"
            if schedule:
                text += f", Schedule type: {schedule}"
            result = parse_a1111_infotext(text)
            return result.values.get("sampler"), result.not_applied

        self.assertEqual(sampler("DPM++ 2M Karras"), ("DPM++ 2M Karras", []))  # before 1.9
        self.assertEqual(sampler("DPM++ SDE", "Karras"), ("DPM++ SDE Karras", []))
        self.assertEqual(sampler("Euler a", "Automatic"), ("Euler a", []))
        self.assertEqual(
            sampler("Euler", "Exponential"),
            ("Euler", ["Schedule type: Exponential (not available with Euler)"]),
        )
        self.assertEqual(
            sampler("DPM++ 3M SDE", "Exponential"),
            (None, ["Sampler: DPM++ 3M SDE (Exponential) (not available here)"]),
        )

    def test_hires_fields_fill_the_hires_fix(self):
        result = parse_a1111_infotext(
            "x\nSteps: 20, Seed: 1, Size: 512x512, Denoising strength: 0.45, "
            "Hires upscale: 1.5, Hires steps: 10, Hires upscaler: Latent"
        )
        self.assertEqual(
            {key: result.values[key] for key in ("hires_fix", "hires_scale", "hires_steps",
                                                 "hires_strength")},
            {"hires_fix": True, "hires_scale": 1.5, "hires_steps": 10, "hires_strength": 0.45},
        )
        self.assertNotIn("strength", result.values)
        self.assertEqual(result.not_applied, ["Hires upscaler: Latent (Lanczos is used here)"])

    def test_hostile_lines_parse_in_linear_time(self):
        for line in ["a" * 200_000, " " * 200_000, 'a:"' * 70_000, "Steps: 1, " + "b:" * 100_000,
                     'Steps: 1, x: "' + "\\" * 100_000]:
            with self.subTest(line=line[:12]):
                started = time.monotonic()
                parse_a1111_infotext("prompt\n" + line)
                self.assertLess(time.monotonic() - started, 2)

    def test_malformed_values_name_the_field(self):
        for text, message in [
            ("x\nSteps: many, Sampler: Euler", "Steps: “many” is not a whole number."),
            ("x\nSteps: 20, CFG scale: high", "CFG scale: “high” is not a number."),
            ("x\nSteps: 20, Size: big", "Size: “big” is not a size like 512x768."),
            ("x\nSteps: 20, Seed: 1.5", "Seed: “1.5” is not a whole number."),
            ("x\nSteps: 20, CFG scale: nan", "CFG scale: “nan” is not a number."),
            ('x\nSteps: 20, Model: "bad \\q"', "Model: the quoted value"),
            ("   ", "The image's parameters text is empty."),
        ]:
            with self.subTest(text=text), self.assertRaisesMessage(ParameterImportError, message):
                parse_a1111_infotext(text)


class ParseComfyUITestCase(SimpleTestCase):
    def test_the_graph_fills_the_form_and_calls_the_lora(self):
        result = parse_comfyui_prompt(json.dumps(COMFYUI_GRAPH))
        self.assertEqual(result.source, "comfyui")
        self.assertEqual(
            result.values,
            {
                "seed": 1566802087,
                "steps": 20,
                "guidance_scale": 8.0,
                "sampler": "DPM++ 2M Karras",
                "prompt": "beautiful scenery, glass bottle, galaxy <lora:paper_cut:0.8>",
                "negative_prompt": "text, watermark",
                "clip_skip": 2,
                "shift": None,  # no shift: the model's default
                "width": 512,
                "height": 640,
                "batch_size": 2,
                "hires_fix": False,
            },
        )
        self.assertEqual(result.model_name, "sd15/tiny-sd15.safetensors")
        self.assertEqual(result.lora_hashes, {"paper_cut": ""})
        self.assertEqual(result.not_applied, [])

    def test_a_second_pass_and_unknown_nodes_are_reported(self):
        graph = json.loads(json.dumps(COMFYUI_GRAPH))
        del graph["10"]
        graph["11"]["inputs"]["clip"] = ["4", 1]
        graph["3"]["inputs"]["model"] = ["4", 0]
        graph["12"] = {"class_type": "LatentUpscaleBy",
                       "inputs": {"samples": ["3", 0], "scale_by": 1.5}}
        graph["13"] = {
            "class_type": "KSampler",
            "inputs": {**graph["3"]["inputs"], "latent_image": ["12", 0], "denoise": 0.5},
        }
        graph["14"] = {"class_type": "FancyCustomNode", "inputs": {"strength": 3}}
        # A second pass from the first's latent not scaled up: a refiner, say.
        graph["15"] = {"class_type": "KSampler",
                       "inputs": {**graph["3"]["inputs"], "latent_image": ["3", 0]}}
        result = parse_comfyui_prompt(graph)
        self.assertEqual(result.values["steps"], 20)  # the first pass
        self.assertEqual(
            result.not_applied,
            [
                "ComfyUI node: FancyCustomNode (14)",
                "Second sampler pass: KSampler node 15 (e.g. hires fix or refiner)",
            ],
        )

    def test_ksampler_advanced_primitive_links_and_plain_samplers(self):
        graph = json.loads(json.dumps(COMFYUI_GRAPH))
        inputs = graph["3"]["inputs"]
        del inputs["seed"], inputs["denoise"]
        inputs.update(noise_seed=["20", 0], add_noise="enable", start_at_step=0,
                      end_at_step=10000, return_with_leftover_noise="disable",
                      sampler_name="euler_ancestral", scheduler="normal")
        graph["3"]["class_type"] = "KSamplerAdvanced"
        graph["20"] = {"class_type": "PrimitiveNode", "inputs": {"value": 99}}
        result = parse_comfyui_prompt(graph)
        self.assertEqual(result.values["seed"], 99)
        self.assertEqual(result.values["sampler"], "Euler a")

    def test_malformed_graphs_are_refused(self):
        for graph, message in [
            ("{not json", "The ComfyUI prompt is not valid JSON"),
            ("[1, 2]", "not an API-format graph"),
            ('{"1": {"inputs": {}}}', "node 1 has no class_type or inputs"),
            ('{"1": {"class_type": "SaveImage", "inputs": {}}}', "has no KSampler node"),
            ('{"1": {"class_type": "KSampler", "inputs": {"steps": NaN}}}', "not valid JSON"),
            ('{"1": {"class_type": "KSampler", "inputs": {"positive": ["9", 0]}}}',
             "a link points to node 9"),
            ('{"1": {"class_type": "KSampler", "inputs": {"steps": "x"}}}',
             "Steps: “x” is not a whole number."),
        ]:
            with self.subTest(graph=graph), self.assertRaisesMessage(ParameterImportError,
                                                                     message):
                parse_comfyui_prompt(graph)

    def test_a_link_cycle_ends(self):
        graph = {
            "1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "steps": 4}},
            "2": {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["2", 0]}},
        }
        result = parse_comfyui_prompt(graph)
        self.assertIn("Positive prompt: not found in the workflow", result.not_applied)


class ReadFileTestCase(SimpleTestCase):
    def test_a1111_jpeg_keeps_its_parameters_in_the_exif_user_comment(self):
        exif = PILImage.Exif()
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = (
            b"UNICODE\0" + "a fox, 狐\nSteps: 9, Seed: 3, Size: 64x64".encode("utf-16-be")
        )
        buffer = io.BytesIO()
        PILImage.new("RGB", (64, 64)).save(buffer, format="JPEG", exif=exif)
        result = read_png_parameters(buffer.getvalue(), max_bytes=10**6)
        self.assertEqual((result.values["prompt"], result.values["steps"]), ("a fox, 狐", 9))

    def test_non_latin_prompts_survive(self):
        data = png_bytes({"parameters": "草原の城\nSteps: 9, Seed: 3, Size: 64x64"})
        result = read_png_parameters(data, max_bytes=10**6)
        self.assertEqual(result.values["prompt"], "草原の城")


class ImportViewTestCase(StudioTestCase):
    def setUp(self):
        self.url = reverse("parameters_import", args=[self.project.pk])
        self.client.force_login(self.editor)
        # What the form holds when the user imports: the import keeps what the image omits.
        self.form_values = {
            "prompt": "what I was writing",
            "negative_prompt": "",
            "model": self.model.pk,
            "steps": 25,
            "guidance_scale": 7,
            "width": 256,
            "height": 256,
            "batch_count": 3,
        }

    def post(self, data, name="image.png", content_type="image/png", **extra):
        return self.client.post(
            self.url,
            {**self.form_values, "image": upload(data, name=name, content_type=content_type),
             **extra},
            headers={"HX-Request": "true"},
        )

    def initial(self, response):
        return response.context["form"].initial

    def assert_refused(self, data, message, name="image.png"):
        response = self.post(data, name=name)
        self.assertEqual(response.status_code, 422)
        self.assertContains(response, message, status_code=422)
        self.assertContains(response, f"Nothing imported from {name}", status_code=422)
        self.assertContains(response, 'role="alert"', status_code=422)
        # The form as it was.
        self.assertEqual(self.initial(response)["prompt"], "what I was writing")
        self.assertEqual(GenerationJob.objects.count(), 0)
        return response

    def studio_png(self, **job_fields):
        job = make_job(
            self.project, self.editor, self.model,
            prompt="a lighthouse, (storm:1.3)\nsecond line",
            negative_prompt="blurry, lowres",
            steps=18, guidance_scale=6.5, width=192, height=128, seed=987654,
            sampler="DPM++ 2M Karras", clip_skip=2, batch_size=2, **job_fields,
        )
        result = GenerationResult(
            images=[], seed=987654, sampler="DPM++ 2M", schedule_type="Karras",
            scheduler_class="DPMSolverMultistepScheduler",
            scheduler_config={"use_karras_sigmas": True}, elapsed_s=1.0,
        )
        image = image_create_from_generation(
            job=job, pil_image=PILImage.new("RGB", (192, 128)), result=result
        )
        with image.file.open("rb") as file:
            data = file.read()
        GenerationJob.objects.all().delete()  # so "no job created" below means something
        return data

    def test_a_studio_png_fills_every_field(self):
        other = DiffusionModel.objects.create(name="other-model", source="/models/other")
        self.form_values["model"] = other.pk
        response = self.post(self.studio_png(), name="lighthouse.png")
        self.assertEqual(response.status_code, 200)
        self.assertTemplateUsed(response, "generation/import_control.html")
        initial = self.initial(response)
        expected = {
            "prompt": "a lighthouse, (storm:1.3)\nsecond line",
            "negative_prompt": "blurry, lowres",
            "model": self.model.pk,
            "steps": 18,
            "guidance_scale": 6.5,
            "width": 192,
            "height": 128,
            "seed": 987654,
            "sampler": "DPM++ 2M Karras",
            "clip_skip": 2,
            "batch_size": 2,
            "hires_fix": False,
        }
        self.assertEqual({key: initial[key] for key in expected}, expected)
        self.assertEqual(initial["batch_count"], "3")  # not part of a recipe: kept
        self.assertFalse(response.context["form"].is_bound)
        self.assertContains(response, "Imported from lighthouse.png (this studio v")
        self.assertNotContains(response, "Not applied")
        self.assertContains(response, 'value="987654"')
        self.assertContains(response, '<option value="DPM++ 2M Karras" selected>')
        self.assertEqual(GenerationJob.objects.count(), 0)

    def test_a_studio_hires_png_fills_the_hires_fix(self):
        data = self.studio_png(hires_scale=1.5, hires_steps=6, hires_strength=0.4)
        initial = self.initial(self.post(data))
        self.assertEqual(
            [initial[key] for key in ("hires_fix", "hires_scale", "hires_steps",
                                      "hires_strength")],
            [True, 1.5, 6, 0.4],
        )

    def test_a_studio_img2img_png_fills_the_strength_and_asks_for_the_source(self):
        data = self.studio_png(mode=JobMode.IMG2IMG, strength=0.35)
        response = self.post(data)
        self.assertEqual(self.initial(response)["strength"], 0.35)
        self.assertContains(response, "Source image: none in the file")
        self.assertEqual(response.content.decode().count("Source image: none in the file"), 1)

    def test_an_a1111_infotext_as_text_fills_the_form_as_its_png_does(self):
        """Pasted into the prompt (studio.js sends it as a text file) or a .txt of Civitai's
        "Copy generation data": the same values as the PNG carrying it."""
        from_png = self.initial(self.post(png_bytes({"parameters": A1111_INFOTEXT})))
        for encoding in ("utf-8", "utf-8-sig"):
            with self.subTest(encoding=encoding):
                response = self.post(A1111_INFOTEXT.replace("\n", "\r\n").encode(encoding),
                                     name="pasted text", content_type="text/plain")
                self.assertEqual(response.status_code, 200)
                self.assertEqual(self.initial(response), from_png)
                self.assertContains(response, "pasted text")

    def test_an_a1111_png_fills_the_form_and_lists_what_was_not_applied(self):
        sd15 = DiffusionModel.objects.create(name="v1-5-pruned-emaonly", source="/models/sd15")
        response = self.post(png_bytes({"parameters": A1111_INFOTEXT}), name="castle.png")
        self.assertEqual(response.status_code, 200)
        initial = self.initial(response)
        self.assertEqual(initial["sampler"], "DPM++ 2M Karras")
        self.assertEqual(initial["model"], sd15.pk)
        self.assertEqual((initial["width"], initial["height"], initial["seed"]), (512, 768, 1234))
        self.assertEqual(initial["clip_skip"], 2)
        self.assertContains(response, "Imported from castle.png (AUTOMATIC1111 v1.10.1)")
        self.assertContains(response, "Not applied:")
        self.assertContains(response, "<li>LoRA: foo (not in your team&#x27;s library)</li>")
        self.assertNotContains(response, "Model hash")
        self.assertContains(response, "alert-warning")

    def test_an_unknown_model_keeps_the_current_one_and_says_so(self):
        response = self.post(png_bytes({"parameters": A1111_INFOTEXT}))
        self.assertEqual(self.initial(response)["model"], self.model.pk)
        self.assertContains(
            response, "Model: v1-5-pruned-emaonly (not in your library; kept tiny-sd15)"
        )

    def test_a_disabled_model_is_not_matched(self):
        DiffusionModel.objects.create(name="v1-5-pruned-emaonly", source="/m", is_enabled=False)
        response = self.post(png_bytes({"parameters": A1111_INFOTEXT}))
        self.assertEqual(self.initial(response)["model"], self.model.pk)

    def test_unknown_fields_are_reported(self):
        text = "x\nSteps: 20, Seed: 5, Size: 64x64, ADetailer model: face_yolov8n.pt, NGMS: 0.2"
        response = self.post(png_bytes({"parameters": text}))
        self.assertContains(response, "<li>ADetailer model: face_yolov8n.pt</li>")
        self.assertContains(response, "<li>NGMS: 0.2</li>")

    def test_a_comfyui_png_fills_the_form(self):
        data = png_bytes({"prompt": json.dumps(COMFYUI_GRAPH), "workflow": "{}"})
        response = self.post(data, name="ComfyUI_00001_.png")
        initial = self.initial(response)
        self.assertEqual(initial["model"], self.model.pk)  # tiny-sd15.safetensors
        self.assertEqual(initial["prompt"],
                         "beautiful scenery, glass bottle, galaxy <lora:paper_cut:0.8>")
        self.assertEqual((initial["clip_skip"], initial["batch_size"]), (2, 2))
        self.assertContains(response, "(ComfyUI)")
        self.assertContains(response, "<li>LoRA: paper_cut (not in your team&#x27;s library)</li>")

    def test_values_the_form_refuses_show_as_field_errors(self):
        text = "x\nSteps: 500, Seed: 5, Size: 100x64"
        response = self.post(png_bytes({"parameters": text}))
        self.assertEqual(response.status_code, 200)
        form = response.context["form"]
        self.assertTrue(form.is_bound)
        self.assertIn("steps", form.errors)
        self.assertIn("width", form.errors)
        self.assertContains(response, "Check the highlighted fields.")
        self.assertContains(response, 'value="500"')

    def test_the_whole_page_answers_without_htmx(self):
        response = self.client.post(
            self.url, {**self.form_values, "image": upload(png_bytes({"parameters": "a cat"}))}
        )
        self.assertContains(response, '<main class="page-wide"')
        self.assertContains(response, "Imported from image.png")

    def test_bad_files_are_refused_with_a_message_and_no_job(self):
        good = png_bytes({"parameters": A1111_INFOTEXT})
        gif = io.BytesIO()
        PILImage.new("RGB", (4, 4)).save(gif, format="GIF")
        cases = [
            (b"just some text, not an image", "not a PNG, WebP or JPEG image"),
            (gif.getvalue(), "not a PNG, WebP or JPEG image"),
            (good[: len(good) // 2], "damaged or incomplete"),
            (good[:-20], "damaged or incomplete"),  # IEND cut off
            (b"", "The file is empty"),
            (png_bytes(), "This image holds no generation parameters"),
            (png_bytes({"Comment": "hello"}), "This image holds no generation parameters"),
            (png_bytes({"workflow": "{}"}), "not a UI-format workflow"),
            (png_bytes({"parameters": "x\nSteps: many, Sampler: Euler"}),
             "Steps: “many” is not a whole number."),
            (png_bytes({"studio": "{broken", "parameters": A1111_INFOTEXT}),
             "The studio metadata is not valid JSON"),
            (png_bytes({"studio": '{"steps": 4}'}), "The studio metadata is malformed"),
            (png_bytes({"studio": json.dumps({"prompt": "x", "steps": "four"})}),
             "Steps: “four” is not a whole number."),
            (png_bytes({"prompt": "{not json"}), "The ComfyUI prompt is not valid JSON"),
            (png_bytes({"prompt": "[" * 100_000}), "The ComfyUI prompt is not valid JSON"),
        ]
        for data, message in cases:
            with self.subTest(message=message, size=len(data)):
                self.assert_refused(data, message)

    def test_a_corrupt_chunk_is_refused(self):
        data = bytearray(png_bytes({"parameters": A1111_INFOTEXT}))
        data[data.index(b"tEXt") + 10] ^= 0xFF  # the chunk's CRC no longer matches
        self.assert_refused(bytes(data), "damaged or incomplete")

    def test_no_file(self):
        response = self.client.post(self.url, self.form_values, headers={"HX-Request": "true"})
        self.assertContains(response, "Choose a PNG, WebP or JPEG image", status_code=422)

    @override_settings(STUDIO_MAX_UPLOAD_BYTES=2000)
    def test_a_file_over_the_size_limit_is_refused(self):
        data = png_bytes({"parameters": "x" * 5000})
        self.assert_refused(data, "The file is too large to import: at most")

    def test_a_decompression_bomb_is_refused(self):
        data = png_bytes({"parameters": A1111_INFOTEXT}, size=(64, 64))
        for limit in (64 * 64 - 1, 100):  # just over (Pillow warns) and far over (it refuses)
            with (
                self.subTest(limit=limit),
                mock.patch.object(PILImage, "MAX_IMAGE_PIXELS", limit),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
                self.assert_refused(data, "too many pixels to open safely")

    def test_the_upload_limit_passes_on_one_byte_past_it_and_no_other_file(self):
        request = RequestFactory().post(self.url, {
            "prompt": "kept",
            "image": upload(b"i" * 5000),
            "source_upload": upload(b"s" * 10, name="source.png"),
        })
        request.upload_handlers.insert(0, ImportUploadLimit(request, 1000))
        self.assertEqual(len(request.FILES["image"].read()), 1001)
        self.assertEqual(request.FILES["source_upload"].read(), b"")
        self.assertEqual(request.POST["prompt"], "kept")

    def test_viewer_is_forbidden_outsider_gets_404_anonymous_logs_in(self):
        data = png_bytes({"parameters": A1111_INFOTEXT})
        self.client.force_login(self.viewer)
        self.assertEqual(self.post(data).status_code, 403)
        self.client.force_login(self.outsider)
        self.assertEqual(self.post(data).status_code, 404)
        self.client.logout()
        response = self.post(data)
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])
        self.assertEqual(self.client.get(self.url).status_code, 302)
        self.client.force_login(self.editor)
        self.assertEqual(self.client.get(self.url).status_code, 405)

    def test_csrf_is_checked(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.editor)
        response = client.post(self.url, {"image": upload(png_bytes({"parameters": "a cat"}))})
        self.assertEqual(response.status_code, 403)

    def test_the_studio_shows_the_import_control_to_editors_only(self):
        studio = reverse("project_studio", args=[self.project.pk])
        response = self.client.get(studio)
        self.assertContains(response, "Import from image")
        self.assertContains(response, f'hx-post="{self.url}"')
        self.assertContains(response, 'id="drop-overlay"')
        self.client.force_login(self.viewer)
        response = self.client.get(studio)
        self.assertNotContains(response, "Import from image")
        self.assertNotContains(response, 'id="drop-overlay"')


class ImportVariationsAndLibraryHashesTestCase(StudioTestCase):
    """Variation seed and strength come back; hashes find the team's model and LoRAs, so
    the "not applied" list names only what really wasn't applied, each thing once."""

    setUp = ImportViewTestCase.setUp
    post = ImportViewTestCase.post
    initial = ImportViewTestCase.initial

    def not_applied(self, response):
        return response.context["import_notice"].get("not_applied", [])

    def test_a1111_variation_seed_and_strength_fill_the_form(self):
        text = (
            "x\nSteps: 20, Sampler: Euler, Seed: 5, Size: 512x512, Variation seed: 777, "
            "Variation seed strength: 0.25"
        )
        response = self.post(png_bytes({"parameters": text}))
        initial = self.initial(response)
        self.assertEqual((initial["variation_seed"], initial["variation_strength"]), (777, 0.25))
        self.assertEqual(self.not_applied(response), [])
        self.assertContains(response, "variation seed, variation strength.")

    def test_a_studio_image_with_variations_and_a_lora_lists_nothing_not_applied(self):
        lora = make_lora(self.team, self.editor, "ink", data=kohya_lora_bytes(seed=11))
        job = make_job(
            self.project, self.editor, self.model, prompt="a fox <lora:ink:0.5>",
            sampler="DPM++ 2M", variation_seed=300, variation_strength=0.4,
        )
        job.job_loras.create(
            lora=lora, name="ink", sha256=lora.sha256, weight=0.5, position=0, in_prompt=True
        )
        result = GenerationResult(
            images=[], seed=42, sampler="DPM++ 2M", schedule_type=None,
            scheduler_class="DPMSolverMultistepScheduler",
            scheduler_config={"lambda_min_clipped": float("-inf")}, elapsed_s=1.0,
            variation_seed=301,
        )
        image = image_create_from_generation(
            job=job, pil_image=PILImage.new("RGB", (64, 64)), result=result
        )
        with image.file.open("rb") as opened:
            response = self.post(opened.read())
        initial = self.initial(response)
        self.assertEqual((initial["variation_seed"], initial["variation_strength"]), (301, 0.4))
        self.assertEqual(initial["prompt"], "a fox <lora:ink:0.5>")
        self.assertEqual(initial["sampler"], "DPM++ 2M")
        self.assertEqual(self.not_applied(response), [])
        self.assertNotContains(response, "Not applied")

    def a1111_with_lora(self, name, short_hash):
        return png_bytes({"parameters": (
            f"a fox <lora:{name}:0.7>\nSteps: 20, Sampler: Euler, Seed: 5, Size: 512x512, "
            f'Lora hashes: "{name}: {short_hash}"'
        )})

    def test_lora_hashes_find_the_teams_lora_by_either_hash(self):
        data = kohya_lora_bytes(seed=12)
        lora = make_lora(self.team, self.editor, "ink", data=data)
        for short_hash in (lora.addnet_hash[:12], lora.sha256[:12]):
            with self.subTest(short_hash=short_hash):
                # A1111 knows the file by another name: the prompt calls the team's.
                response = self.post(self.a1111_with_lora("inky_v2", short_hash))
                self.assertEqual(self.initial(response)["prompt"], "a fox <lora:ink:0.7>")
                self.assertEqual(self.not_applied(response), [])

    def test_a_lora_by_name_but_another_file_or_not_in_the_library_is_listed_once(self):
        make_lora(self.team, self.editor, "ink", data=kohya_lora_bytes(seed=13))
        response = self.post(self.a1111_with_lora("ink", "0123456789ab"))
        self.assertEqual(
            self.not_applied(response),
            ["Lora hashes: ink: 0123456789ab (the library's ink is another file)"],
        )
        response = self.post(self.a1111_with_lora("paper", "0123456789ab"))
        self.assertEqual(self.not_applied(response), ["LoRA: paper (not in your team's library)"])

    def test_another_teams_lora_is_not_found_by_its_hash(self):
        theirs = make_lora(self.other_team, self.outsider, "ink", data=kohya_lora_bytes(seed=14))
        response = self.post(self.a1111_with_lora("ink", theirs.addnet_hash[:12]))
        self.assertEqual(self.initial(response)["prompt"], "a fox <lora:ink:0.7>")
        self.assertEqual(self.not_applied(response), ["LoRA: ink (not in your team's library)"])

    def test_the_model_is_found_by_its_hash(self):
        sha256 = hashlib.sha256(b"dreamshaper").hexdigest()
        model = DiffusionModel.objects.create(
            name="DreamShaper 8", source="/models/ds8.safetensors", sha256=sha256
        )
        text = (
            f"x\nSteps: 20, Sampler: Euler, Seed: 5, Size: 512x512, Model hash: {sha256[:10]}, "
            "Model: dreamshaper_8_pruned"
        )
        response = self.post(png_bytes({"parameters": text}))
        self.assertEqual(self.initial(response)["model"], model.pk)
        self.assertEqual(self.not_applied(response), [])
        # The name matches, the file doesn't: said so.
        text = text.replace(sha256[:10], "0123456789")
        text = text.replace("dreamshaper_8_pruned", "DreamShaper 8")
        response = self.post(png_bytes({"parameters": text}))
        self.assertEqual(self.not_applied(response), [
            f"Model hash: 0123456789 (the library's DreamShaper 8 is another file, {sha256[:10]})"
        ])
        # A1111's legacy 8-digit hash is another algorithm: nothing to compare.
        response = self.post(png_bytes({"parameters": text.replace("0123456789", "6ce01616")}))
        self.assertEqual(self.initial(response)["model"], model.pk)
        self.assertEqual(self.not_applied(response), [])

    def test_malformed_variations_and_hashes_are_refused_or_ignored_by_name(self):
        spec = {"prompt": "x", "variation": {"seed": 1, "strength": "lots"}}
        response = self.post(png_bytes({"studio": json.dumps(spec)}))
        self.assertContains(
            response, "Variation seed strength: “lots” is not a number.", status_code=422
        )
        spec = {"prompt": "x", "variation": [1]}
        response = self.post(png_bytes({"studio": json.dumps(spec)}))
        self.assertContains(response, "its variation is not an object", status_code=422)
        spec = {"prompt": "x", "model": {"name": "m", "sha256": 5},
                "loras": [{"name": "ink", "sha256": 12345, "weight": 1}]}
        response = self.post(png_bytes({"studio": json.dumps(spec)}))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.initial(response)["prompt"], "x <lora:ink:1>")
        self.assertIn("LoRA: ink (not in your team's library)", self.not_applied(response))
