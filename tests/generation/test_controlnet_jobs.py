"""ControlNet from the studio: the form's ControlNet section, refusals before any job, the
edge-map preview, and a job run on the tiny model and tiny ControlNet."""

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
from generation.models import DiffusionModel, GenerationJob, ModelFamily, ModelKind
from tests.base import GenerateFormTestCase, make_image, make_job


def square_png(size=(64, 64), name="edges.png"):
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    image[size[1] // 4 : 3 * size[1] // 4, size[0] // 4 : 3 * size[0] // 4] = 255
    buffer = io.BytesIO()
    PILImage.fromarray(image).save(buffer, format="PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


class ControlNetFormTestCase(GenerateFormTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.controlnet = DiffusionModel.objects.create(
            name="canny-sd15", source="/models/canny", kind=ModelKind.CONTROLNET
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

    def test_the_studio_shows_the_controlnet_section(self):
        response = self.client.get(reverse("project_studio", args=[self.project.pk]))
        self.assertContains(response, "<summary>ControlNet</summary>", html=True)
        self.assertContains(response, "canny-sd15")
        self.assertContains(response, reverse("control_preview", args=[self.project.pk]))

    def test_an_upload_and_a_controlnet_make_a_controlled_job(self):
        response = self.post(
            control_model=self.controlnet.pk,
            control_upload=square_png(),
            control_low_threshold=50,
            control_high_threshold=150,
            control_scale=0.8,
        )
        self.assertEqual(response.status_code, 200)
        job = GenerationJob.objects.get()
        self.assertEqual(job.control_model, self.controlnet)
        self.assertEqual(
            (job.control_low_threshold, job.control_high_threshold, job.control_scale),
            (50, 150, 0.8),
        )
        self.assertRegex(job.control_upload.name, rf"^uploads/{self.project.pk}/[0-9a-f]{{32}}")
        self.assertEqual(job.mode, "txt2img")

    def test_a_gallery_image_the_user_may_see_is_a_control_image(self):
        image = make_image(make_job(self.project, self.owner, self.model))
        self.post(control_model=self.controlnet.pk, control_image=image.pk)
        self.assertEqual(
            GenerationJob.objects.get(control_image=image).control_model, self.controlnet
        )

    def test_without_a_controlnet_nothing_is_set(self):
        self.post()
        job = GenerationJob.objects.get()
        self.assertIsNone(job.control_model)
        self.assertFalse(job.control_upload)

    def test_a_controlnet_without_an_image(self):
        self.assert_refused("control_upload", "Choose the image", control_model=self.controlnet.pk)

    def test_an_image_without_a_controlnet(self):
        self.assert_refused(
            "control_model", "Choose a ControlNet model", control_upload=square_png()
        )

    def test_a_checkpoint_is_not_a_controlnet(self):
        self.assert_refused(
            "control_model",
            "Unknown ControlNet model",
            control_model=self.model.pk,
            control_upload=square_png(),
        )

    def test_a_switched_off_controlnet(self):
        DiffusionModel.objects.filter(pk=self.controlnet.pk).update(is_enabled=False)
        self.assert_refused(
            "control_model",
            "Unknown ControlNet model",
            control_model=self.controlnet.pk,
            control_upload=square_png(),
        )

    def test_a_family_mismatch(self):
        sdxl = DiffusionModel.objects.create(
            name="tiny-sdxl", source="/models/sdxl", family=ModelFamily.SDXL
        )
        self.assert_refused(
            "control_model",
            "Choose one of the same family",
            model=sdxl.pk,
            control_model=self.controlnet.pk,
            control_upload=square_png(),
        )
        sd2 = DiffusionModel.objects.create(
            name="sd2", source="/models/sd2", family=ModelFamily.SD2
        )
        self.assert_refused(
            "control_model",
            "Choose one of the same family",
            model=sd2.pk,
            control_model=self.controlnet.pk,
            control_upload=square_png(),
        )

    def test_thresholds_out_of_range_or_crossed(self):
        control = {"control_model": self.controlnet.pk}
        self.assert_refused(
            "control_low_threshold",
            "must not be above",
            control_upload=square_png(),
            control_low_threshold=200,
            control_high_threshold=100,
            **control,
        )
        self.assert_refused(
            "control_high_threshold",
            "Canny high threshold must be from 0 to 255.",
            control_upload=square_png(),
            control_high_threshold=300,
            **control,
        )

    def test_scale_out_of_range(self):
        self.assert_refused(
            "control_scale",
            "Control weight must be from 0 to 2.",
            control_model=self.controlnet.pk,
            control_upload=square_png(),
            control_scale=2.5,
        )

    def test_a_corrupt_control_upload(self):
        broken = SimpleUploadedFile("x.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")
        response = self.post(control_model=self.controlnet.pk, control_upload=broken)
        self.assertEqual(response.status_code, 422)
        self.assertIn("control_upload", response.context["form"].errors)
        self.assertFalse(GenerationJob.objects.exists())

    def test_a_gallery_image_of_another_team_is_refused(self):
        other = make_image(make_job(self.other_project, self.outsider, self.model))
        self.assert_refused(
            "control_image",
            "Unknown control image",
            control_model=self.controlnet.pk,
            control_image=other.pk,
        )

    def test_an_sdxl_controlnet_steers_an_sdxl_model(self):
        sdxl = DiffusionModel.objects.create(
            name="tiny-sdxl", source="/models/sdxl", family=ModelFamily.SDXL
        )
        controlnet = DiffusionModel.objects.create(
            name="canny-sdxl", source="/models/canny-xl", kind=ModelKind.CONTROLNET,
            family=ModelFamily.SDXL,
        )
        self.post(model=sdxl.pk, control_model=controlnet.pk, control_upload=square_png())
        self.assertEqual(GenerationJob.objects.get().control_model, controlnet)

    def test_outpaint_with_a_controlnet_makes_a_controlled_job(self):
        self.post(
            control_model=self.controlnet.pk,
            control_upload=square_png(),
            source_upload=square_png(name="source.png"),
            outpaint_left=64,
        )
        job = GenerationJob.objects.get()
        self.assertEqual((job.mode, job.control_model), ("outpaint", self.controlnet))


class ControlPreviewTestCase(GenerateFormTestCase):
    def setUp(self):
        self.url = reverse("control_preview", args=[self.project.pk])
        self.client.force_login(self.editor)

    def test_the_preview_is_the_edge_map_png(self):
        response = self.client.post(
            self.url,
            {
                "control_upload": square_png(),
                "control_low_threshold": 100,
                "control_high_threshold": 200,
            },
        )
        self.assertEqual(response["Content-Type"], "image/png")
        edges = np.asarray(PILImage.open(io.BytesIO(response.content)))
        self.assertEqual(edges.shape, (64, 64))
        self.assertTrue(edges[14:18, 20:44].any())  # the square's top border
        self.assertFalse(edges[24:40, 24:40].any())  # nothing inside

    def test_htmx_gets_an_image_fragment_at_the_jobs_size(self):
        response = self.client.post(
            self.url,
            {"control_upload": square_png(size=(200, 100)), "width": 128, "height": 64},
            headers={"HX-Request": "true"},
        )
        self.assertContains(response, 'src="data:image/png;base64,')
        self.assertContains(response, "thresholds 100 and 200")

    def test_bad_input_says_why(self):
        response = self.client.post(self.url, {"control_low_threshold": 5})
        self.assertEqual(response.status_code, 422)
        self.assertIn(b"Choose a control image", response.content)
        response = self.client.post(
            self.url,
            {
                "control_upload": square_png(),
                "control_low_threshold": 250,
                "control_high_threshold": 10,
            },
        )
        self.assertIn(b"must not be above", response.content)

    def test_another_teams_gallery_image_is_not_previewed(self):
        other = make_image(make_job(self.other_project, self.outsider, self.model))
        response = self.client.post(self.url, {"control_image": other.pk})
        self.assertEqual(response.status_code, 422)

    def test_an_outsider_may_not_preview_in_the_project(self):
        self.client.force_login(self.outsider)
        response = self.client.post(self.url, {"control_upload": square_png()})
        self.assertIn(response.status_code, (403, 404))


@pytest.fixture(scope="session")
def tiny_controlnet_dir(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_controlnet

    return build_tiny_controlnet(tmp_path_factory.mktemp("models") / "tiny-controlnet")


@pytest.mark.django_db
def test_a_controlnet_job_runs_on_the_tiny_models(tiny_model_dir, tiny_controlnet_dir):
    from studio.accounts.models import Membership, Project, Role, Team, User

    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    controlnet = DiffusionModel.objects.create(
        name="tiny-canny", source=str(tiny_controlnet_dir), kind=ModelKind.CONTROLNET
    )
    name = default_storage.save(
        "uploads/test/control.png", ContentFile(square_png(size=(96, 80)).read())
    )
    job = GenerationJob.objects.create(
        project=project,
        created_by=user,
        model=model,
        prompt="a house",
        steps=4,
        guidance_scale=6.5,
        width=64,
        height=48,
        seed=7,
        control_model=controlnet,
        control_upload=name,
        control_low_threshold=50,
        control_high_threshold=150,
        control_scale=0.75,
    )
    (request,) = generation_requests(job)
    assert request.control.image.size == (64, 48)
    assert (request.control.low_threshold, request.control.conditioning_scale) == (50, 0.75)

    with mock.patch("generation.execution.publish"):
        job_execute(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == "finished", job.error
    image = Image.objects.get(job=job)
    assert (
        'ControlNet 0: "Module: canny, Model: tiny-canny, Weight: 0.75, Resize Mode: Just '
        'Resize, Threshold A: 50, Threshold B: 150, Guidance Start: 0, Guidance End: 1"'
    ) in image.parameters
    spec = json.loads(PILImage.open(image.file).info["studio"])
    assert spec["controlnet"]["model"]["name"] == "tiny-canny"
    assert spec["controlnet"]["weight"] == 0.75

    # The same job without its ControlNet makes another image: the edges steered it.
    plain = GenerationJob.objects.create(
        project=project,
        created_by=user,
        model=model,
        prompt="a house",
        steps=4,
        guidance_scale=6.5,
        width=64,
        height=48,
        seed=7,
    )
    with mock.patch("generation.execution.publish"):
        job_execute(job_id=plain.pk)
    plain_image = Image.objects.get(job=plain)
    assert not np.array_equal(
        np.asarray(PILImage.open(image.file)), np.asarray(PILImage.open(plain_image.file))
    )


@pytest.mark.django_db
def test_the_hires_pass_keeps_the_controlnet_at_the_larger_size(tiny_model_dir):
    from generation.execution import hires_requests
    from gpu_workers.requests import GenerationResult
    from studio.accounts.models import Project, Team, User

    user = User.objects.create_user("ann", "ann@example.org", "pw")
    project = Project.objects.create(team=Team.objects.create(name="T"), name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    controlnet = DiffusionModel.objects.create(
        name="canny", source="/models/canny", kind=ModelKind.CONTROLNET
    )
    name = default_storage.save("uploads/test/c.png", ContentFile(square_png().read()))
    job = make_job(
        project, user, model, control_model=controlnet, control_upload=name, hires_scale=2.0
    )
    first = generation_requests(job)
    results = [
        GenerationResult(
            images=[PILImage.new("RGB", (64, 64))],
            seed=42,
            sampler="Euler",
            schedule_type=None,
            scheduler_class="x",
            scheduler_config={},
            elapsed_s=0,
        )
    ]
    (second,) = hires_requests(job, first, results)
    assert second.control.image.size == (128, 128) == (second.width, second.height)
    assert second.control.model_source == "/models/canny"


def test_a1111_controlnet_unit_fills_weight_and_thresholds():
    from generation.parameters_import import parse_a1111_infotext

    imported = parse_a1111_infotext(
        "a house\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, "
        'Model: sd15, ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], '
        "Weight: 0.6, Resize Mode: Crop and Resize, Threshold A: 80, Threshold B: 160, "
        'Guidance Start: 0, Guidance End: 1", Version: v1.10.1'
    )
    assert imported.values["control_scale"] == 0.6
    assert (
        imported.values["control_low_threshold"],
        imported.values["control_high_threshold"],
    ) == (
        80,
        160,
    )
    assert any(
        note.startswith("ControlNet: control_v11p_sd15_canny") for note in imported.not_applied
    )

    depth = parse_a1111_infotext(
        'a house\nSteps: 20, Seed: 1, ControlNet 0: "Module: depth_midas, Model: x, Weight: 1"'
    )
    assert "control_scale" not in depth.values
    assert "ControlNet: depth_midas (only canny edges are supported here)" in depth.not_applied


def test_the_studio_spec_controlnet_fills_weight_and_thresholds():
    from generation.parameters_import import parse_studio_spec

    imported = parse_studio_spec(
        {
            "prompt": "a house",
            "controlnet": {
                "module": "canny",
                "model": {"name": "tiny-canny", "source": "/m"},
                "image_id": 3,
                "weight": 0.75,
                "low_threshold": 50,
                "high_threshold": 150,
            },
        }
    )
    assert imported.values["control_scale"] == 0.75
    assert imported.values["control_low_threshold"] == 50
    assert imported.values["control_high_threshold"] == 150
    assert any(note.startswith("ControlNet: tiny-canny") for note in imported.not_applied)


@pytest.fixture(scope="session")
def tiny_sdxl_controlnet_dir(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_controlnet

    return build_tiny_controlnet(tmp_path_factory.mktemp("models") / "tiny-cn-xl", sdxl=True)


@pytest.mark.django_db
@pytest.mark.parametrize("sdxl", [False, True], ids=["sd15-outpaint", "sdxl-txt2img"])
def test_sdxl_and_outpaint_controlnet_jobs_run_on_the_tiny_models(
    tiny_model_dir, tiny_sdxl_model_dir, tiny_controlnet_dir, tiny_sdxl_controlnet_dir, sdxl
):
    from studio.accounts.models import Membership, Project, Role, Team, User

    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    family = ModelFamily.SDXL if sdxl else ModelFamily.SD15
    model = DiffusionModel.objects.create(
        name="tiny", source=str(tiny_sdxl_model_dir if sdxl else tiny_model_dir), family=family
    )
    controlnet = DiffusionModel.objects.create(
        name="tiny-canny", source=str(tiny_sdxl_controlnet_dir if sdxl else tiny_controlnet_dir),
        kind=ModelKind.CONTROLNET, family=family,
    )
    control = default_storage.save("uploads/test/c.png", ContentFile(square_png().read()))
    source = default_storage.save("uploads/test/s.png", ContentFile(square_png().read()))
    fields = {} if sdxl else {"mode": "outpaint", "source_upload": source, "outpaint_left": 16}

    def run(**control_fields):
        job = make_job(
            project, user, model, steps=3, width=64 if sdxl else 80, height=64, seed=3,
            **fields, **control_fields,
        )
        with mock.patch("generation.execution.publish"):
            job_execute(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == "finished", job.error
        return np.asarray(PILImage.open(Image.objects.get(job=job).file))

    steered = run(control_model=controlnet, control_upload=control)
    assert steered.shape[:2] == (64, 64 if sdxl else 80)
    assert not np.array_equal(steered, run())
