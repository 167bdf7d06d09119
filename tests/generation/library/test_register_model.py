"""`manage.py register_model`: the library's checks and fields from the command line."""

import io
import json
import tempfile
from pathlib import Path

import numpy as np
from django.core.management import CommandError, call_command
from django.test import TestCase
from safetensors.numpy import save_file

from generation.models import DiffusionModel, ModelKind, SourceKind
from studio.accounts.models import Role


def register(*args):
    out = io.StringIO()
    call_command("register_model", *args, stdout=out)
    return out.getvalue()


class RegisterModelTestCase(TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def test_a_hub_id_with_defaults(self):
        output = register("runwayml/stable-diffusion-v1-5", "--name", "SD 1.5", "--width", "512",
                          "--height", "768", "--sampler", "DPM++ 2M Karras")
        self.assertIn("Registered model 'SD 1.5'", output)
        model = DiffusionModel.objects.get(name="SD 1.5")
        self.assertEqual(model.source_kind, SourceKind.HUB)
        self.assertEqual((model.default_height, model.default_sampler), (768, "DPM++ 2M Karras"))
        self.assertEqual(model.min_role, Role.EDITOR)

    def test_each_family_gets_its_own_default_size_and_guidance(self):
        for family, expected in [("sd15", (512, 7.0)), ("sdxl", (1024, 7.0)),
                                 ("flux1", (1024, 3.5)), ("sd3", (1024, 7.0))]:
            with self.subTest(family=family):
                register(f"owner/{family}-model", "--family", family)
                model = DiffusionModel.objects.get(source=f"owner/{family}-model")
                self.assertEqual((model.default_width, model.default_height,
                                  model.default_guidance_scale), (*expected[:1], *expected))
        register("owner/flux-custom", "--family", "flux1", "--guidance-scale", "1")
        self.assertEqual(
            DiffusionModel.objects.get(source="owner/flux-custom").default_guidance_scale, 1.0
        )

    def test_a_local_folder_is_recognised_and_checked(self):
        folder = Path(self.tmp.name) / "finetune"
        folder.mkdir()
        index = {"_class_name": "StableDiffusionPipeline"}
        (folder / "model_index.json").write_text(json.dumps(index))
        register(str(folder), "--min-role", "admin", "--description", "House style")
        model = DiffusionModel.objects.get(source=str(folder))
        self.assertEqual(model.source_kind, SourceKind.FOLDER)
        self.assertEqual((model.min_role, model.description), (Role.ADMIN, "House style"))

    def test_a_single_file_with_its_config(self):
        path = Path(self.tmp.name) / "model.safetensors"
        save_file(
            {
                "model.diffusion_model.out.2.weight": np.zeros(1, dtype=np.float32),
                "cond_stage_model.transformer.text_model.x": np.zeros(1, dtype=np.float32),
            },
            str(path),
        )
        register(str(path), "--name", "Single", "--config", "owner/sd15-configs")
        model = DiffusionModel.objects.get(name="Single")
        self.assertEqual(model.source_kind, SourceKind.FILE)
        self.assertEqual(model.config_source, "owner/sd15-configs")

    def test_a_controlnet_entry(self):
        register("lllyasviel/sd-controlnet-canny", "--kind", "controlnet", "--name", "Canny")
        self.assertEqual(DiffusionModel.objects.get(name="Canny").kind, ModelKind.CONTROLNET)

    def test_registering_a_name_again_updates_it(self):
        register("owner/model", "--name", "Mine", "--steps", "20")
        register("owner/model", "--name", "Mine", "--steps", "30", "--disabled")
        model = DiffusionModel.objects.get()
        self.assertEqual((model.default_steps, model.is_enabled), (30, False))

    def test_refusals_name_the_field(self):
        with self.assertRaisesMessage(CommandError, "Source: There is no folder at"):
            register(f"{self.tmp.name}/missing")
        pickle = Path(self.tmp.name) / "model.ckpt"
        pickle.write_bytes(b"\x80\x04")
        with self.assertRaisesMessage(CommandError, "never loads pickles"):
            register(str(pickle))
        with self.assertRaisesMessage(CommandError, "Width: Width must be a multiple of 8"):
            register("owner/model", "--width", "500")
        self.assertFalse(DiffusionModel.objects.exists())

    def test_nothing_to_register_is_an_error(self):
        with self.assertRaisesMessage(CommandError, "Give a Hub id"):
            register()


def test_tiny_registers_the_tiny_model_with_a_controlnet_and_an_ip_adapter(db, tmp_path, settings):
    settings.STUDIO_TINY_MODEL_DIR = tmp_path / "tiny-sd15"
    register("--tiny")
    register("--tiny")  # again: the same entries, built once
    library = {model.name: model for model in DiffusionModel.objects.all()}
    assert {name: model.kind for name, model in library.items()} == {
        "tiny-sd15": ModelKind.CHECKPOINT,
        "tiny-controlnet-sd15": ModelKind.CONTROLNET,
        "tiny-ip-adapter-sd15": ModelKind.IP_ADAPTER,
    }
    assert Path(library["tiny-controlnet-sd15"].source, "config.json").is_file()
    assert Path(library["tiny-ip-adapter-sd15"].source, "ip-adapter.safetensors").is_file()
    assert Path(library["tiny-ip-adapter-sd15"].source, "image_encoder").is_dir()
