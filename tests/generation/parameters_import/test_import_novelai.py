"""Import: a NovelAI image (tEXt `Software: NovelAI`, the prompt in `Description`, the
model in `Source`, the request's settings as JSON in `Comment`) fills the form."""

import json

from django.test import SimpleTestCase

from generation.parameters_import import ParameterImportError, read_png_parameters
from tests.generation.parameters_import.test_parameters_import import png_bytes

# The chunks as NovelAI's image generator writes them (V3).
NOVELAI_COMMENT = {
    "prompt": "1girl, cherry blossoms, best quality, amazing quality",
    "steps": 28, "height": 1216, "width": 832, "scale": 5.0, "uncond_scale": 1.0,
    "cfg_rescale": 0.0, "seed": 1873462155, "n_samples": 1, "hide_debug_overlay": False,
    "noise_schedule": "karras", "legacy_v3_extend": False,
    "reference_information_extracted_multiple": [], "reference_strength_multiple": [],
    "sampler": "k_dpmpp_2m", "controlnet_strength": 1.0, "controlnet_model": None,
    "dynamic_thresholding": False, "dynamic_thresholding_percentile": 0.999,
    "dynamic_thresholding_mimic_scale": 10.0, "sm": True, "sm_dyn": False,
    "skip_cfg_above_sigma": None, "skip_cfg_below_sigma": 0.0, "lora_unet_weights": None,
    "lora_clip_weights": None, "deliberate_euler_ancestral_bug": False,
    "prefer_brownian": True, "cfg_sched_eligibility": "enable_for_post_summer_samplers",
    "explike_fine_detail": False, "minimize_sigma_inf": False, "uncond_per_vibe": True,
    "wonky_vibe_correlation": True, "version": 1,
    "uc": "lowres, bad anatomy, worst quality",
    "request_type": "PromptGenerateRequest", "signed_hash": "dGVzdA==",
}


def novelai_png(comment=NOVELAI_COMMENT, software="NovelAI"):
    return png_bytes({
        "Title": "NovelAI generated image",
        "Description": NOVELAI_COMMENT["prompt"],
        "Software": software,
        "Source": "NovelAI Diffusion V3 4BDE2A90",
        "Generation time": "4.1",
        "Comment": comment if isinstance(comment, str) else json.dumps(comment),
    })


class ImportNovelAITestCase(SimpleTestCase):
    def test_the_comment_fills_the_form(self):
        result = read_png_parameters(novelai_png(), max_bytes=10**6)
        self.assertEqual(result.source_label, "NovelAI")
        self.assertEqual(result.values, {
            "prompt": NOVELAI_COMMENT["prompt"], "negative_prompt": NOVELAI_COMMENT["uc"],
            "steps": 28, "guidance_scale": 5.0, "seed": 1873462155, "width": 832,
            "height": 1216, "batch_size": 1, "sampler": "DPM++ 2M Karras", "clip_skip": 1,
            "hires_fix": False,
        })
        self.assertEqual(result.model_name, "NovelAI Diffusion V3 4BDE2A90")
        self.assertEqual(result.not_applied, ["NovelAI sm: True"])

    def test_old_comments_take_the_prompt_from_the_description(self):
        comment = {"steps": 28, "sampler": "k_euler_ancestral", "seed": 7, "strength": 0.7,
                   "noise": 0.2, "scale": 11.0, "uc": "lowres"}
        result = read_png_parameters(novelai_png(comment), max_bytes=10**6)
        self.assertEqual(result.values["prompt"], NOVELAI_COMMENT["prompt"])
        self.assertEqual((result.values["sampler"], result.values["strength"]), ("Euler a", 0.7))

    def test_v4_character_prompts_are_listed(self):
        comment = {**NOVELAI_COMMENT, "sm": False, "v4_prompt": {
            "caption": {"base_caption": NOVELAI_COMMENT["prompt"], "char_captions": [
                {"char_caption": "girl, red hair", "centers": [{"x": 0.3, "y": 0.5}]}]},
            "use_coords": True, "use_order": True}}
        result = read_png_parameters(novelai_png(comment), max_bytes=10**6)
        self.assertEqual(result.not_applied, ["NovelAI character prompts: 1"])

    def test_another_software_or_a_bad_comment(self):
        with self.assertRaisesMessage(ParameterImportError, "holds no generation parameters"):
            read_png_parameters(novelai_png(software="Paint"), max_bytes=10**6)
        for comment, message in [
            ("{no", "The NovelAI Comment is not valid JSON"),
            ("[]", "The NovelAI Comment is not a JSON object."),
            ({"steps": 1.5}, "Steps: “1.5” is not a whole number."),
            ({"uc": ["x"]}, "Undesired content is not text"),
        ]:
            with self.subTest(comment=comment), self.assertRaisesMessage(
                ParameterImportError, message
            ):
                read_png_parameters(novelai_png(comment), max_bytes=10**6)
