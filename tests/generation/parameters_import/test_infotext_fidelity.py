"""What our images carry reads as AUTOMATIC1111 writes it and as strict parsers need it:
strict JSON for every sampler, A1111's Model hash, addnet Lora hashes, a Schedule type
always, and A1111's "Automatic" schedule read as A1111 reads it."""

import hashlib
import io
import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from PIL import Image as PILImage
from PIL import PngImagePlugin
from safetensors.numpy import save_file

from gallery.services import image_create_from_generation
from generation.library.hashes import model_hash_compute
from generation.loras.services import lora_hashes
from generation.models import DiffusionModel, SourceKind
from generation.parameters_import import parse_a1111_infotext, read_png_parameters
from gpu_workers.requests import GenerationResult
from gpu_workers.samplers import SAMPLERS
from studio.accounts.models import User
from tests.base import StudioTestCase, make_job
from tests.lora_builders import kohya_lora_bytes, kohya_metadata, make_lora


def strict_json_loads(text):
    """As JavaScript's JSON.parse: no Infinity, -Infinity or NaN."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def scheduler_configs():
    """Each sampler's scheduler config, as the engine records it (gpu_workers.engine), from
    SD 1.5's scheduler config."""
    import diffusers

    base = diffusers.PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
    )
    configs = {}
    for name, sampler in SAMPLERS.items():
        scheduler_class = getattr(diffusers, sampler.scheduler_class)
        scheduler = scheduler_class.from_config(base.config, **sampler.config)
        configs[name] = json.loads(scheduler.to_json_string())
    return configs


def addnet_hash_as_a1111(data):
    """modules/hashes.py addnet_hash_safetensors, on bytes."""
    header_size = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header_size :]).hexdigest()


class ImageWriting(StudioTestCase):
    configs = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if ImageWriting.configs is None:
            ImageWriting.configs = scheduler_configs()

    def png(self, sampler_name="Euler", *, model=None, config=None, **job_fields):
        """The PNG of a generated image: its `parameters` and `studio` chunks."""
        job = make_job(
            self.project, self.editor, model or self.model, sampler=sampler_name,
            prompt="a lighthouse", negative_prompt="fog", **job_fields,
        )
        sampler = SAMPLERS[sampler_name]
        result = GenerationResult(
            images=[], seed=42, sampler=sampler.infotext_name,
            schedule_type=sampler.schedule_type, scheduler_class=sampler.scheduler_class,
            scheduler_config=config if config is not None else self.configs[sampler_name],
            elapsed_s=1.0, variation_seed=job.variation_seed,
        )
        image = image_create_from_generation(
            job=job, pil_image=PILImage.new("RGB", (64, 64)), result=result
        )
        with image.file.open("rb") as opened:
            data = opened.read()
        return data, PILImage.open(io.BytesIO(data)).info


class StrictJsonTestCase(ImageWriting):
    def test_every_sampler_writes_strict_json_and_imports_back(self):
        self.assertTrue(
            any(value == float("-inf") for value in self.configs["DPM++ 2M"].values()),
            "DPM++ schedulers' configs hold -inf: the case this guards",
        )
        for name in SAMPLERS:
            with self.subTest(sampler=name):
                data, info = self.png(name)
                spec = strict_json_loads(info["studio"])
                self.assertEqual(spec["sampler"], name)
                imported = read_png_parameters(io.BytesIO(data))
                self.assertEqual(imported.source, "studio")
                self.assertEqual(imported.values["sampler"], name)
                self.assertEqual(imported.not_applied, [])
                # The A1111 text alone, as A1111 and other readers see it.
                self.assertEqual(
                    parse_a1111_infotext(info["parameters"]).values["sampler"], name
                )

    def test_non_finite_numbers_are_written_as_strings(self):
        _, info = self.png("DPM++ 2M")
        spec = strict_json_loads(info["studio"])
        self.assertEqual(spec["scheduler"]["config"]["lambda_min_clipped"], "-Infinity")

    def test_images_written_before_with_infinity_still_import(self):
        spec = {"prompt": "old", "sampler": "DPM++ 2M", "steps": 20,
                "scheduler": {"config": {"lambda_min_clipped": float("-inf")}}}
        info = PngImagePlugin.PngInfo()
        info.add_text("studio", json.dumps(spec))  # Python's default writes -Infinity
        buffer = io.BytesIO()
        PILImage.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
        self.assertIn("-Infinity", json.dumps(spec))
        imported = read_png_parameters(io.BytesIO(buffer.getvalue()))
        self.assertEqual(imported.values["sampler"], "DPM++ 2M")
        self.assertEqual(imported.values["steps"], 20)


class ScheduleTypeTestCase(ImageWriting):
    def test_every_sampler_writes_a_schedule_type_right_after_it(self):
        expected = {
            "DPM++ 2M": "DPM++ 2M, Schedule type: Uniform,",  # A1111's Automatic is Karras
            "DPM++ 2M Karras": "DPM++ 2M, Schedule type: Karras,",
            "DPM++ SDE Karras": "DPM++ SDE, Schedule type: Karras,",
            "Euler": "Euler, Schedule type: Automatic,",
            "DDIM": "DDIM, Schedule type: Automatic,",
        }
        for name in SAMPLERS:
            with self.subTest(sampler=name):
                _, info = self.png(name, config={})
                settings = info["parameters"].splitlines()[-1]
                self.assertRegex(settings, r"^Steps: \d+, Sampler: [^,]+, Schedule type: \w+,")
                if name in expected:
                    self.assertIn(f"Sampler: {expected[name]}", settings)

    def test_automatic_is_read_as_a1111s_default_for_the_sampler(self):
        def sampler(fields):
            result = parse_a1111_infotext(f"x\nSteps: 5, {fields}")
            return result.values.get("sampler"), result.not_applied

        # A1111 1.9+: DPM++ 2M's automatic schedule is Karras, and a missing one is
        # automatic; Euler's is the model's own.
        self.assertEqual(
            sampler("Sampler: DPM++ 2M, Schedule type: Automatic"), ("DPM++ 2M Karras", [])
        )
        self.assertEqual(sampler("Sampler: DPM++ 2M"), ("DPM++ 2M Karras", []))
        self.assertEqual(sampler("Sampler: DPM++ SDE"), ("DPM++ SDE Karras", []))
        self.assertEqual(sampler("Sampler: DPM++ 2M, Schedule type: Uniform"), ("DPM++ 2M", []))
        self.assertEqual(sampler("Sampler: Euler, Schedule type: Automatic"), ("Euler", []))
        self.assertEqual(sampler("Sampler: Euler, Schedule type: Uniform"), ("Euler", []))
        self.assertEqual(sampler("Sampler: DPM++ 2M Karras"), ("DPM++ 2M Karras", []))


class ModelHashTestCase(ImageWriting):
    def single_file_model(self, content=b"not really a checkpoint, but bytes to hash"):
        folder = Path(tempfile.mkdtemp())
        path = folder / "dreamshaper_8.safetensors"
        path.write_bytes(content)
        self.addCleanup(path.unlink)
        return DiffusionModel.objects.create(
            name="dreamshaper_8", source=str(path), source_kind=SourceKind.FILE
        )

    def test_the_model_hash_is_written_between_size_and_model(self):
        model = self.single_file_model()
        expected = hashlib.sha256(Path(model.source).read_bytes()).hexdigest()
        self.assertEqual(model_hash_compute(model_id=model.pk, source=model.source), expected)
        model.refresh_from_db()
        self.assertEqual(model.sha256, expected)
        _, info = self.png(model=model)
        self.assertIn(
            f"Size: 64x64, Model hash: {expected[:10]}, Model: dreamshaper_8,",
            info["parameters"],
        )
        self.assertEqual(strict_json_loads(info["studio"])["model"]["sha256"], expected)

    def test_a_model_without_its_hash_gets_it_on_the_cpu_queue_when_an_image_is_written(self):
        model = self.single_file_model()
        with mock.patch("generation.library.hashes.send") as send:
            with self.captureOnCommitCallbacks(execute=True):
                _, info = self.png(model=model)
                self.png(model=model)  # a batch's next image asks no more
        self.assertNotIn("Model hash", info["parameters"])
        self.assertEqual(send.call_count, 1)
        task, *args = send.call_args.args
        self.assertEqual(send.call_args.kwargs, {"queue": settings.STUDIO_CPU_QUEUE})
        task(*args)  # what the CPU worker runs
        model.refresh_from_db()
        self.assertEqual(model.sha256, hashlib.sha256(Path(model.source).read_bytes()).hexdigest())
        _, info = self.png(model=model)
        self.assertIn(f"Model hash: {model.sha256[:10]}, Model: dreamshaper_8", info["parameters"])

    def test_a_hash_is_not_kept_for_a_source_that_changed_meanwhile(self):
        model = self.single_file_model()
        old_source = model.source
        other = Path(tempfile.mkdtemp()) / "other.safetensors"
        other.write_bytes(b"another file")
        self.addCleanup(other.unlink)
        DiffusionModel.objects.filter(pk=model.pk).update(source=str(other))
        self.assertIsNone(model_hash_compute(model_id=model.pk, source=old_source))
        model.refresh_from_db()
        self.assertEqual(model.sha256, "")

    def test_registering_a_single_file_hashes_it_and_a_new_source_again(self):
        folder = Path(tempfile.mkdtemp())
        paths = [folder / "one.safetensors", folder / "two.safetensors"]
        for seed, path in enumerate(paths):
            tensors = {
                "model.diffusion_model.out.2.weight": np.full(4, seed, dtype=np.float32),
                "cond_stage_model.transformer.text_model.x": np.zeros(1, dtype=np.float32),
            }
            save_file(tensors, str(path))
            self.addCleanup(path.unlink)
        run_now = mock.patch(
            "generation.library.hashes.send", side_effect=lambda task, *args, queue: task(*args)
        )
        for path in paths:
            with run_now, self.captureOnCommitCallbacks(execute=True):
                call_command("register_model", str(path), "--name", "Single", stdout=io.StringIO())
            model = DiffusionModel.objects.get(name="Single")
            self.assertEqual(model.sha256, hashlib.sha256(path.read_bytes()).hexdigest())

    def test_a_model_added_in_the_admin_is_hashed(self):
        path = Path(tempfile.mkdtemp()) / "admin.safetensors"
        save_file({"model.diffusion_model.out.2.weight": np.zeros(4, dtype=np.float32),
                   "cond_stage_model.transformer.text_model.x": np.zeros(1, dtype=np.float32)},
                  str(path))
        self.addCleanup(path.unlink)
        staff = User.objects.create_superuser("root", "root@example.org", "pw")
        self.client.force_login(staff)
        data = {
            "name": "From admin", "kind": "checkpoint", "family": "sd15", "source_kind": "file",
            "source": str(path), "config_source": "", "description": "", "default_width": 512,
            "default_height": 512, "default_steps": 25, "default_guidance_scale": 7,
            "default_sampler": "", "min_role": "editor", "is_enabled": "on",
        }
        run_now = mock.patch(
            "generation.library.hashes.send", side_effect=lambda task, *args, queue: task(*args)
        )
        with run_now, self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(reverse("admin:generation_diffusionmodel_add"), data)
        self.assertEqual(response.status_code, 302)
        model = DiffusionModel.objects.get(name="From admin")
        self.assertEqual(model.sha256, hashlib.sha256(path.read_bytes()).hexdigest())

    def test_folders_and_hub_models_write_no_hash(self):
        with mock.patch("generation.library.hashes.send") as send:
            with self.captureOnCommitCallbacks(execute=True):
                _, info = self.png()
        send.assert_not_called()
        self.assertNotIn("Model hash", info["parameters"])


class LoraHashTestCase(ImageWriting):
    def test_lora_hashes_are_a1111s_addnet_hash(self):
        data = kohya_lora_bytes(seed=3)
        lora = make_lora(self.team, self.editor, "ink", data=data)
        expected = addnet_hash_as_a1111(data)
        self.assertNotEqual(expected, hashlib.sha256(data).hexdigest())
        self.assertEqual(lora.addnet_hash, expected)
        job = make_job(self.project, self.editor, self.model)
        job.job_loras.create(lora=lora, name="ink", sha256=lora.sha256, weight=0.5, position=0)
        self.assertEqual(lora_hashes(list(job.job_loras.all())), f"ink: {expected[:12]}")

    def test_a_files_sshs_model_hash_is_the_one_written(self):
        written = "ab" * 32
        data = kohya_lora_bytes(seed=4, metadata=kohya_metadata(sshs_model_hash=written))
        lora = make_lora(self.team, self.editor, "ink", data=data)
        self.assertEqual(lora.addnet_hash, written)

    def test_loras_added_before_get_their_hash_when_an_image_records_them(self):
        data = kohya_lora_bytes(seed=5)
        lora = make_lora(self.team, self.editor, "ink", data=data)
        type(lora).objects.filter(pk=lora.pk).update(addnet_hash="")
        job = make_job(self.project, self.editor, self.model)
        job.job_loras.create(lora=lora, name="ink", sha256=lora.sha256, weight=1, position=0)
        self.assertEqual(
            lora_hashes(list(job.job_loras.all())), f"ink: {addnet_hash_as_a1111(data)[:12]}"
        )
        lora.refresh_from_db()
        self.assertEqual(lora.addnet_hash, addnet_hash_as_a1111(data))
