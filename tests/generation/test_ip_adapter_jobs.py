"""IP-Adapter from the studio: the form's image prompt section, refusals before any job,
the record in the PNG, and jobs run on the tiny model and tiny IP-Adapter through the
worker's code path."""

import io
import json
from unittest import mock

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import generation_requests, job_execute
from generation.models import (
    DiffusionModel,
    GenerationJob,
    ModelFamily,
    ModelKind,
    TeamModelSetting,
)
from generation.services import ModelNotAllowed, job_retry
from studio.accounts.models import Role
from tests.base import GenerateFormTestCase, make_image, make_job
from tests.generation.test_controlnet_jobs import square_png


class IPAdapterFormTestCase(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.adapter = DiffusionModel.objects.create(
            name="ip-adapter-sd15", source="/models/ip-adapter", kind=ModelKind.IP_ADAPTER
        )

    def setUp(self):
        self.url = reverse("job_create", args=[self.project.pk])
        self.client.force_login(self.editor)
        self.params = {
            "prompt": "a house by a lake",
            "model": self.model.pk,
            "steps": 10,
            "guidance_scale": 7,
            "width": 64,
            "height": 64,
        }

    def test_the_studio_shows_the_image_prompt_section(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, "<summary>Image prompt (IP-Adapter)</summary>", html=True)
        self.assertContains(response, "ip-adapter-sd15")

    def test_the_studio_offers_only_adapters_the_user_may_use(self):
        TeamModelSetting.objects.create(team=self.team, model=self.adapter, min_role=Role.ADMIN)
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertNotContains(response, "ip-adapter-sd15")

    def test_an_upload_and_an_adapter_make_an_image_prompted_job(self):
        response = self.post(
            ip_adapter_model=self.adapter.pk, ip_adapter_upload=square_png(), ip_adapter_scale=0.8
        )
        self.assertEqual(response.status_code, 200)
        job = GenerationJob.objects.get()
        self.assertEqual((job.ip_adapter_model, job.ip_adapter_scale), (self.adapter, 0.8))
        self.assertRegex(job.ip_adapter_upload.name, rf"^uploads/{self.project.pk}/[0-9a-f]{{32}}")
        self.assertEqual(job.mode, "txt2img")

    def test_a_gallery_image_the_user_may_see_is_an_image_prompt(self):
        image = make_image(make_job(self.project, self.owner, self.model))
        self.post(ip_adapter_model=self.adapter.pk, ip_adapter_image=image.pk)
        job = GenerationJob.objects.get(ip_adapter_image=image)
        self.assertEqual((job.ip_adapter_model, job.ip_adapter_scale), (self.adapter, 0.6))
        self.assertEqual(job.parameters()["ip_adapter_image"], image.pk)

    def test_without_an_adapter_nothing_is_set(self):
        self.post()
        job = GenerationJob.objects.get()
        self.assertIsNone(job.ip_adapter_model)
        self.assertFalse(job.ip_adapter_upload)

    def test_an_image_without_an_adapter(self):
        self.assert_refused(
            "ip_adapter_model", "Choose an IP-Adapter model", ip_adapter_upload=square_png()
        )

    def test_an_adapter_without_an_image(self):
        self.assert_refused(
            "ip_adapter_upload", "Choose the image", ip_adapter_model=self.adapter.pk
        )

    def test_scale_out_of_range(self):
        for scale in (2.5, -0.1):
            self.assert_refused(
                "ip_adapter_scale",
                "Image prompt weight must be from 0 to 2.",
                ip_adapter_model=self.adapter.pk,
                ip_adapter_upload=square_png(),
                ip_adapter_scale=scale,
            )

    def test_a_family_mismatch(self):
        sdxl = DiffusionModel.objects.create(
            name="tiny-sdxl", source="/models/sdxl", family=ModelFamily.SDXL
        )
        self.assert_refused(
            "ip_adapter_model",
            "Choose one of the same family",
            model=sdxl.pk,
            ip_adapter_model=self.adapter.pk,
            ip_adapter_upload=square_png(),
        )

    def test_an_adapter_the_user_may_not_use(self):
        TeamModelSetting.objects.create(team=self.team, model=self.adapter, min_role=Role.ADMIN)
        self.assert_refused(
            "ip_adapter_model",
            "needs the Admin role",
            ip_adapter_model=self.adapter.pk,
            ip_adapter_upload=square_png(),
        )
        TeamModelSetting.objects.filter(team=self.team).update(min_role="", is_enabled=False)
        self.assert_refused(
            "ip_adapter_model",
            "has switched it off",
            ip_adapter_model=self.adapter.pk,
            ip_adapter_upload=square_png(),
        )

    def test_a_checkpoint_or_controlnet_is_not_an_adapter(self):
        controlnet = DiffusionModel.objects.create(
            name="canny", source="/models/canny", kind=ModelKind.CONTROLNET
        )
        for other in (self.model, controlnet):
            self.assert_refused(
                "ip_adapter_model",
                "not an IP-Adapter",
                ip_adapter_model=other.pk,
                ip_adapter_upload=square_png(),
            )

    def test_a_corrupt_image_prompt(self):
        broken = SimpleUploadedFile("x.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")
        response = self.post(ip_adapter_model=self.adapter.pk, ip_adapter_upload=broken)
        self.assertEqual(response.status_code, 422)
        self.assertIn("ip_adapter_upload", response.context["form"].errors)
        self.assertFalse(GenerationJob.objects.exists())

    def test_a_gallery_image_of_another_team_is_refused(self):
        other = make_image(make_job(self.other_project, self.outsider, self.model))
        self.assert_refused(
            "ip_adapter_image",
            "Unknown image prompt",
            ip_adapter_model=self.adapter.pk,
            ip_adapter_image=other.pk,
        )

    def test_retry_refuses_an_adapter_the_user_may_no_longer_use(self):
        job = make_job(
            self.project, self.editor, self.model, ip_adapter_model=self.adapter,
            ip_adapter_upload="uploads/face.png", status="failed",
        )
        TeamModelSetting.objects.create(team=self.team, model=self.adapter, is_enabled=False)
        with self.assertRaisesMessage(ModelNotAllowed, "IP-Adapter “ip-adapter-sd15”"):
            job_retry(job=job, user=self.editor)


@pytest.fixture(scope="session")
def tiny_ip_adapter_dir(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_ip_adapter

    return build_tiny_ip_adapter(tmp_path_factory.mktemp("models") / "tiny-ip-adapter")


def noise_png(seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.django_db
def test_an_ip_adapter_job_runs_on_the_tiny_models(tiny_model_dir, tiny_ip_adapter_dir):
    from studio.accounts.models import Membership, Project, Team, User

    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    adapter = DiffusionModel.objects.create(
        name="tiny-ip-adapter", source=str(tiny_ip_adapter_dir), kind=ModelKind.IP_ADAPTER
    )
    upload = default_storage.save("uploads/test/prompt.png", ContentFile(noise_png(1)))

    def run(**fields):
        job = make_job(
            project, user, model, steps=4, guidance_scale=6.5, width=64, height=48, seed=7,
            **fields,
        )
        with mock.patch("generation.execution.publish"):
            job_execute(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == "finished", job.error
        image = Image.objects.get(job=job)
        return image, np.asarray(PILImage.open(image.file))

    plain_before, plain_pixels = run()
    prompted, prompted_pixels = run(
        ip_adapter_model=adapter, ip_adapter_upload=upload, ip_adapter_scale=0.8
    )
    _, zero_pixels = run(ip_adapter_model=adapter, ip_adapter_upload=upload, ip_adapter_scale=0)
    _, plain_after_pixels = run()

    # The image prompt steered the fixed-seed image; at scale 0 it adds nothing; and it
    # leaves nothing behind in the worker's model for the next job.
    assert not np.array_equal(plain_pixels, prompted_pixels)
    assert np.array_equal(plain_pixels, zero_pixels)
    assert np.array_equal(plain_pixels, plain_after_pixels)

    assert (
        'ControlNet 0: "Module: ip-adapter_clip_sd15, Model: tiny-ip-adapter, Weight: 0.8, '
        'Resize Mode: Crop and Resize, Guidance Start: 0, Guidance End: 1"'
    ) in prompted.parameters
    assert "ControlNet" not in plain_before.parameters
    spec = json.loads(PILImage.open(prompted.file).info["studio"])
    assert spec["ip_adapter"] == {
        "model": {"name": "tiny-ip-adapter", "source": str(tiny_ip_adapter_dir)},
        "image_id": None,
        "scale": 0.8,
    }


@pytest.mark.django_db
def test_a_gallery_image_prompt_goes_to_the_worker_and_the_hires_pass(tiny_model_dir):
    from generation.execution import hires_requests
    from gpu_workers.requests import GenerationResult
    from studio.accounts.models import Project, Team, User

    user = User.objects.create_user("ann", "ann@example.org", "pw")
    project = Project.objects.create(team=Team.objects.create(name="T"), name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    adapter = DiffusionModel.objects.create(
        name="ipa", source="/models/ipa", kind=ModelKind.IP_ADAPTER
    )
    source = make_image(make_job(project, user, model))
    job = make_job(
        project, user, model, ip_adapter_model=adapter, ip_adapter_image=source,
        ip_adapter_scale=1.25, hires_scale=2.0,
    )
    (first,) = generation_requests(job)
    assert first.ip_adapter.model_source == "/models/ipa"
    assert (first.ip_adapter.scale, first.ip_adapter.name) == (1.25, "ipa")
    assert first.ip_adapter.image.size == (source.width, source.height)
    result = GenerationResult(
        images=[PILImage.new("RGB", (first.width, first.height))], seed=42, sampler="Euler",
        schedule_type=None, scheduler_class="x", scheduler_config={}, elapsed_s=0,
    )
    (second,) = hires_requests(job, [first], [result])
    assert second.ip_adapter == first.ip_adapter


def test_a1111_and_studio_ip_adapter_units_fill_the_weight():
    from generation.parameters_import import parse_a1111_infotext, parse_studio_spec

    imported = parse_a1111_infotext(
        "a house\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, "
        'Model: sd15, ControlNet 0: "Module: canny, Model: canny, Weight: 0.5, Threshold A: '
        '80, Threshold B: 160", ControlNet 1: "Module: ip-adapter_clip_sd15, Model: '
        'ip-adapter_sd15 [6a3f6166], Weight: 0.7, Resize Mode: Crop and Resize", Version: x'
    )
    assert imported.values["control_scale"] == 0.5
    assert imported.values["ip_adapter_scale"] == 0.7
    assert any(note.startswith("IP-Adapter: ip-adapter_sd15") for note in imported.not_applied)
    assert not any(note.startswith("ControlNet 1") for note in imported.not_applied)

    spec = parse_studio_spec(
        {"prompt": "a house", "ip_adapter": {"model": {"name": "ipa"}, "image_id": 3, "scale": 1.5}}
    )
    assert spec.values["ip_adapter_scale"] == 1.5
    assert any(note.startswith("IP-Adapter: ipa") for note in spec.not_applied)
