"""Import of ComfyUI API graphs as ComfyUI's nodes.py defines them: 64-bit seeds, LoRA
loaders called as the team's library LoRA of that name, a second KSampler on the first
pass's latent scaled up read as the hires fix (CLIPSetLastLayer as clip skip:
tests/generation/parameters_import/test_parameters_import.py)."""

import copy
import json

from django.test import SimpleTestCase
from django.urls import reverse

from generation.parameters_import import parse_comfyui_prompt
from tests.base import StudioTestCase
from tests.generation.parameters_import.test_parameters_import import (
    COMFYUI_GRAPH,
    png_bytes,
    upload,
)
from tests.lora_builders import kohya_lora_bytes, make_lora

SEED_64 = 0xFFFFFFFFFFFFFFF0  # ComfyUI's seed widget goes up to 0xffffffffffffffff


def hires_graph():
    """ComfyUI's "2 pass txt2img" example: KSampler → LatentUpscale → KSampler."""
    graph = copy.deepcopy(COMFYUI_GRAPH)
    graph["3"]["inputs"]["seed"] = SEED_64
    graph["12"] = {"class_type": "LatentUpscale", "inputs": {
        "upscale_method": "nearest-exact", "width": 768, "height": 960, "crop": "disabled",
        "samples": ["3", 0]}}
    graph["13"] = {"class_type": "KSampler", "inputs": {
        **graph["3"]["inputs"], "steps": 14, "denoise": 0.55, "latent_image": ["12", 0]}}
    graph["8"]["inputs"]["samples"] = ["13", 0]
    return graph


class ParseComfyUIGraphTestCase(SimpleTestCase):
    def test_a_second_ksampler_after_a_latent_upscale_is_the_hires_fix(self):
        result = parse_comfyui_prompt(json.dumps(hires_graph()))
        values = result.values
        self.assertEqual(values["seed"], SEED_64)
        self.assertEqual(
            (values["hires_fix"], values["hires_scale"], values["hires_steps"],
             values["hires_strength"]),
            (True, 1.5, 14, 0.55),
        )
        self.assertEqual(result.not_applied,
                         ["Hires upscaler: latent nearest-exact (Lanczos is used here)"])

    def test_a_hires_pass_with_other_settings_says_so(self):
        graph = hires_graph()
        graph["13"]["inputs"].update(cfg=4.0)
        graph["12"] = {"class_type": "LatentUpscaleBy", "inputs": {
            "upscale_method": "bislerp", "scale_by": 2.0, "samples": ["3", 0]}}
        result = parse_comfyui_prompt(graph)
        self.assertEqual(result.values["hires_scale"], 2.0)
        self.assertIn("Hires pass: its cfg differs from the first pass's", result.not_applied)

    def test_lora_loaders_on_the_model_chain_are_called_by_file_name(self):
        graph = copy.deepcopy(COMFYUI_GRAPH)
        graph["10"]["inputs"].update(lora_name="styles\\ink_v2.safetensors",
                                     strength_clip=0.5)
        graph["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
            "lora_name": "detail.safetensors", "strength_model": -0.25, "model": ["10", 0]}}
        graph["3"]["inputs"]["model"] = ["20", 0]
        result = parse_comfyui_prompt(graph)
        self.assertEqual(
            result.values["prompt"],
            "beautiful scenery, glass bottle, galaxy <lora:detail:-0.25> <lora:ink_v2:0.8>",
        )
        self.assertEqual(result.lora_hashes, {"detail": "", "ink_v2": ""})
        self.assertEqual(result.not_applied,
                         ["LoRA CLIP strength: ink_v2: 0.5 (the model's 0.8 is used)"])

    def test_a_hostile_upscale_is_refused_by_name(self):
        graph = hires_graph()
        graph["12"]["inputs"]["width"] = "wide"
        with self.assertRaisesMessage(ValueError, "Hires width: “wide” is not a whole number."):
            parse_comfyui_prompt(graph)


class ImportComfyUIGraphViewTestCase(StudioTestCase):
    def post(self, user, graph):
        self.client.force_login(user)
        return self.client.post(
            reverse("parameters_import", args=[self.project.pk]),
            {"model": self.model.pk, "image": upload(png_bytes({"prompt": json.dumps(graph)}))},
            headers={"HX-Request": "true"},
        )

    def test_the_form_takes_the_64_bit_seed_the_hires_fix_and_the_teams_lora(self):
        make_lora(self.team, self.editor, "paper_cut", data=kohya_lora_bytes(seed=41))
        response = self.post(self.editor, hires_graph())
        self.assertEqual(response.status_code, 200)
        form = response.context["form"]
        self.assertFalse(form.is_bound, form.errors if form.is_bound else "")
        self.assertEqual(form.initial["seed"], SEED_64)
        self.assertTrue(form.initial["hires_fix"])
        self.assertEqual(form.initial["prompt"],
                         "beautiful scenery, glass bottle, galaxy <lora:paper_cut:0.8>")
        self.assertNotIn("LoRA", " ".join(response.context["import_notice"]["not_applied"]))

    def test_an_outsider_cannot_import(self):
        self.assertEqual(self.post(self.outsider, hires_graph()).status_code, 404)
