"""Every generation mode through real processes: the studio's form posted over HTTP to the
server, run by the worker (a Celery worker on Redis, or the embedded one), on the tiny
SD1.5 and SDXL models with a tiny ControlNet and a tiny IP-Adapter."""

import base64
import io
import time

import pytest
from PIL import Image as PILImage

from gallery.models import Image
from generation.models import DiffusionModel, GenerationJob, JobMode, JobStatus, ModelKind
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.http import StudioClient

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password-1"
FINAL = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED}


def mask_data_url(size, box):
    mask = PILImage.new("L", size, 0)
    mask.paste(255, box)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wait_until_done(jobs, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {job.pk: GenerationJob.objects.get(pk=job.pk) for job in jobs}
        if all(state.status in FINAL for state in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"not done in {timeout}s: {[(j.pk, j.status) for j in states.values()]}")


@pytest.fixture
def every_model(tmp_path_factory, tiny_model_dir, tiny_sdxl_model_dir):
    from gpu_workers.tiny_models import build_tiny_controlnet, build_tiny_ip_adapter

    root = tmp_path_factory.mktemp("mode-models")
    return {
        "sd15": DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir)),
        "sdxl": DiffusionModel.objects.create(
            name="tiny-sdxl", source=str(tiny_sdxl_model_dir), family="sdxl"
        ),
        "controlnet": DiffusionModel.objects.create(
            name="canny-sd15", kind=ModelKind.CONTROLNET,
            source=str(build_tiny_controlnet(root / "canny")),
        ),
        "ip_adapter": DiffusionModel.objects.create(
            name="ip-adapter-sd15", kind=ModelKind.IP_ADAPTER,
            source=str(build_tiny_ip_adapter(root / "ip-adapter")),
        ),
    }


def test_every_mode_runs_through_the_worker(studio_processes, every_model):
    user = User.objects.create_user("mo", "mo@example.org", PASSWORD)
    team = Team.objects.create(name="Modes")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="Every mode")
    client = StudioClient(studio_processes["base_url"])
    client.log_in("mo", PASSWORD)

    def generate(**fields):
        params = {"prompt": "a lighthouse on a cliff", "model": every_model["sd15"].pk,
                  "steps": 4, "guidance_scale": 7, "width": 64, "height": 64, "seed": 7,
                  **fields}
        before = set(GenerationJob.objects.filter(project=project).values_list("pk", flat=True))
        status, body = client.post(f"/projects/{project.pk}/generate/", params,
                                   headers={"HX-Request": "true"})
        assert status == 200, body[:500]
        return GenerationJob.objects.filter(project=project).exclude(pk__in=before).get()

    first = generate()
    source = Image.objects.get(job=wait_until_done([first])[first.pk])

    by_mode = {
        "img2img": generate(source_image=source.pk, strength=0.6),
        "inpaint": generate(source_image=source.pk, strength=0.9,
                            mask_data=mask_data_url((64, 64), (16, 16, 48, 48))),
        "outpaint": generate(source_image=source.pk, outpaint_right=16, outpaint_top=8),
        "variations": generate(variation_seed=99, variation_strength=0.3),
        "hires fix": generate(hires_fix="on", hires_scale=1.5, hires_steps=2,
                              hires_strength=0.5),
        "controlnet": generate(control_model=every_model["controlnet"].pk,
                               control_image=source.pk, control_scale=1),
        "ip-adapter": generate(ip_adapter_model=every_model["ip_adapter"].pk,
                               ip_adapter_image=source.pk, ip_adapter_scale=0.8),
        "sdxl": generate(model=every_model["sdxl"].pk),
    }
    done = wait_until_done(by_mode.values())

    for mode, job in by_mode.items():
        job = done[job.pk]
        assert job.status == JobStatus.FINISHED, (mode, job.error)
        assert job.attempts == 1, mode
    jobs = {mode: done[job.pk] for mode, job in by_mode.items()}
    assert jobs["img2img"].mode == JobMode.IMG2IMG
    assert jobs["inpaint"].mode == JobMode.INPAINT
    assert jobs["outpaint"].mode == JobMode.OUTPAINT

    def image_of(mode):
        return Image.objects.get(job=jobs[mode])

    assert (image_of("outpaint").width, image_of("outpaint").height) == (80, 72)
    assert (image_of("hires fix").width, image_of("hires fix").height) == (96, 96)
    assert "Denoising strength: 0.6" in image_of("img2img").parameters
    assert "Variation seed: 99" in image_of("variations").parameters
    assert "Hires upscale: 1.5" in image_of("hires fix").parameters
    assert "ControlNet 0" in image_of("controlnet").parameters
    assert "Model: tiny-sdxl" in image_of("sdxl").parameters
    for mode in ("img2img", "inpaint", "outpaint"):
        assert jobs[mode].source_image_id == source.pk, mode
    assert jobs["controlnet"].control_image_id == source.pk
    assert jobs["ip-adapter"].ip_adapter_image_id == source.pk

    # Each PNG comes back over HTTP to its owner, with its recipe inside.
    for mode in jobs:
        status, body = client.get(image_of(mode).file_url())
        assert status == 200, mode
        assert PILImage.open(io.BytesIO(body)).info["parameters"] == image_of(mode).parameters
