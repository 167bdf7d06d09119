"""Import of the FLUX.1 and SD 3.5 graphs ComfyUI users share (issue #17), in API format,
with ComfyUI's node class and input names: FLUX.1 [dev] as ComfyUI's example runs it
(UNETLoader, DualCLIPLoader, FluxGuidance, SamplerCustomAdvanced with RandomNoise,
BasicGuider, KSamplerSelect, BasicScheduler, ModelSamplingFlux, EmptySD3LatentImage) or
with a KSampler; SD 3.5 with TripleCLIPLoader and ModelSamplingSD3's shift."""

import copy
import json
import math

from django.test import SimpleTestCase

from generation.parameters_import import parse_comfyui_prompt

# ComfyUI's FLUX.1 [dev] example workflow (comfyanonymous.github.io/ComfyUI_examples/flux),
# as its `prompt` chunk holds it.
FLUX_DEV_CUSTOM_SAMPLER = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {
        "text": "cute anime girl with massive fluffy fennec ears", "clip": ["11", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI",
                                                "images": ["8", 0]}},
    "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "11": {"class_type": "DualCLIPLoader", "inputs": {
        "clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors",
        "type": "flux", "device": "default"}},
    "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                  "weight_dtype": "default"}},
    "13": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["25", 0], "guider": ["22", 0], "sampler": ["16", 0], "sigmas": ["17", 0],
        "latent_image": ["27", 0]}},
    "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "17": {"class_type": "BasicScheduler", "inputs": {
        "scheduler": "simple", "steps": 20, "denoise": 1.0, "model": ["30", 0]}},
    "22": {"class_type": "BasicGuider", "inputs": {"model": ["30", 0],
                                                   "conditioning": ["26", 0]}},
    "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 219670278747233}},
    "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5,
                                                    "conditioning": ["6", 0]}},
    "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 768,
                                                           "batch_size": 1}},
    "30": {"class_type": "ModelSamplingFlux", "inputs": {
        "max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 768,
        "model": ["12", 0]}},
}
# ComfyUI's "simple to use" FLUX.1 [dev] checkpoint example: a KSampler at CFG 1.
FLUX_DEV_KSAMPLER = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 972054013131368, "steps": 20, "cfg": 1.0, "sampler_name": "euler",
        "scheduler": "simple", "denoise": 1.0, "model": ["4", 0], "positive": ["35", 0],
        "negative": ["33", 0], "latent_image": ["27", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "flux1-dev-fp8.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {
        "text": "a bottle with a rainbow galaxy inside it", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI",
                                                "images": ["8", 0]}},
    "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024,
                                                           "batch_size": 1}},
    "33": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "35": {"class_type": "FluxGuidance", "inputs": {"guidance": 2.5,
                                                    "conditioning": ["6", 0]}},
}
# ComfyUI's SD 3.5 Large example with the text encoders loaded apart and a shift set.
SD35_LARGE = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 585353066934113, "steps": 30, "cfg": 4.5, "sampler_name": "euler",
        "scheduler": "simple", "denoise": 1.0, "model": ["13", 0], "positive": ["16", 0],
        "negative": ["40", 0], "latent_image": ["53", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "sd3.5_large.safetensors"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI",
                                                "images": ["8", 0]}},
    "11": {"class_type": "TripleCLIPLoader", "inputs": {
        "clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors",
        "clip_name3": "t5xxl_fp16.safetensors"}},
    "13": {"class_type": "ModelSamplingSD3", "inputs": {"shift": 3.0, "model": ["4", 0]}},
    "16": {"class_type": "CLIPTextEncode", "inputs": {
        "text": "a fox in a field of tulips, golden hour", "clip": ["11", 0]}},
    "40": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["11", 0]}},
    "53": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024,
                                                           "batch_size": 2}},
}


class FluxGraphTestCase(SimpleTestCase):
    def test_the_custom_sampler_example(self):
        result = parse_comfyui_prompt(json.dumps(FLUX_DEV_CUSTOM_SAMPLER))
        values = result.values
        self.assertEqual(values["prompt"], "cute anime girl with massive fluffy fennec ears")
        self.assertEqual(values["negative_prompt"], "")
        self.assertEqual(
            (values["seed"], values["steps"], values["sampler"], values["guidance_scale"],
             values["width"], values["height"], values["batch_size"]),
            (219670278747233, 20, "Euler", 3.5, 1024, 768, 1),
        )
        self.assertIsNone(values["shift"])  # ModelSamplingFlux at its defaults: FLUX.1's own
        self.assertEqual(result.model_name, "flux1-dev.safetensors")
        self.assertEqual(sorted(result.not_applied), [
            "Text encoders (the model's own are used): t5xxl_fp16, clip_l",
            "VAE: ae.safetensors",
        ])

    def test_a_ksampler_at_cfg_1_with_flux_guidance(self):
        result = parse_comfyui_prompt(FLUX_DEV_KSAMPLER)
        values = result.values
        self.assertEqual((values["guidance_scale"], values["sampler"], values["seed"]),
                         (2.5, "Euler", 972054013131368))
        self.assertEqual(result.model_name, "flux1-dev-fp8.safetensors")
        self.assertEqual(result.not_applied, [])

    def test_cfg_on_top_of_the_distilled_guidance_is_reported(self):
        graph = copy.deepcopy(FLUX_DEV_KSAMPLER)
        graph["3"]["inputs"]["cfg"] = 3.0
        result = parse_comfyui_prompt(graph)
        self.assertEqual(result.values["guidance_scale"], 2.5)
        self.assertIn("CFG scale: 3 (FLUX.1 runs with its distilled guidance only, no CFG)",
                      result.not_applied)

    def test_without_a_guidance_node_flux_runs_its_default(self):
        graph = copy.deepcopy(FLUX_DEV_KSAMPLER)
        graph["3"]["inputs"]["positive"] = ["6", 0]
        del graph["35"]
        graph["40"] = {"class_type": "DualCLIPLoader", "inputs": {
            "clip_name1": "t5xxl_fp8_e4m3fn.safetensors", "clip_name2": "clip_l.safetensors",
            "type": "flux"}}
        graph["6"]["inputs"]["clip"] = ["40", 0]
        self.assertEqual(parse_comfyui_prompt(graph).values["guidance_scale"], 3.5)

    def test_a_shift_of_its_own_is_comfyuis_exp_mu(self):
        """ModelSamplingFlux's mu at 1024x1024 (4096 tokens) is max_shift: the same
        schedule as a shift of e^max_shift."""
        graph = copy.deepcopy(FLUX_DEV_CUSTOM_SAMPLER)
        graph["30"]["inputs"].update(max_shift=1.5, width=1024, height=1024)
        self.assertAlmostEqual(parse_comfyui_prompt(graph).values["shift"],
                               round(math.exp(1.5), 4))

    def test_clip_text_encode_flux_gives_its_t5_prompt_and_guidance(self):
        graph = copy.deepcopy(FLUX_DEV_CUSTOM_SAMPLER)
        graph["6"] = {"class_type": "CLIPTextEncodeFlux", "inputs": {
            "clip_l": "fox, snow", "t5xxl": "a red fox in deep snow at dawn",
            "guidance": 4.0, "clip": ["11", 0]}}
        graph["22"]["inputs"]["conditioning"] = ["6", 0]
        del graph["26"]
        result = parse_comfyui_prompt(graph)
        self.assertEqual(result.values["prompt"], "a red fox in deep snow at dawn")
        self.assertEqual(result.values["guidance_scale"], 4.0)
        self.assertIn("Positive prompt (CLIP-L text): fox, snow", result.not_applied)

    def test_parts_made_by_other_nodes_are_reported(self):
        graph = copy.deepcopy(FLUX_DEV_CUSTOM_SAMPLER)
        graph["17"] = {"class_type": "BetaSamplingScheduler", "inputs": {
            "model": ["30", 0], "steps": 24, "alpha": 0.6, "beta": 0.6}}
        result = parse_comfyui_prompt(graph)
        self.assertIn("Sigmas: from a BetaSamplingScheduler node", result.not_applied)
        self.assertNotIn("steps", result.values)


class SD35GraphTestCase(SimpleTestCase):
    def test_sd35_with_its_shift_and_cfg(self):
        result = parse_comfyui_prompt(SD35_LARGE)
        values = result.values
        self.assertEqual(
            (values["prompt"], values["negative_prompt"], values["guidance_scale"],
             values["shift"], values["sampler"], values["steps"], values["batch_size"]),
            ("a fox in a field of tulips, golden hour", "blurry", 4.5, 3.0, "Euler", 30, 2),
        )
        self.assertEqual(result.model_name, "sd3.5_large.safetensors")
        self.assertEqual(result.not_applied, [
            "Text encoders (the model's own are used): clip_g, clip_l, t5xxl_fp16",
        ])

    def test_another_schedule_is_reported(self):
        graph = copy.deepcopy(SD35_LARGE)
        graph["3"]["inputs"]["scheduler"] = "sgm_uniform"
        result = parse_comfyui_prompt(graph)
        self.assertEqual(result.values["sampler"], "Euler")
        self.assertIn("Schedule type: SGM Uniform (not available with Euler)",
                      result.not_applied)
