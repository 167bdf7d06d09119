"""FLUX.1 and SD 3.x through real processes (issue #17): the studio's form posted over HTTP
to the server, run by the worker (a Celery worker on Redis, or the embedded one), on the
tiny FLUX.1 and SD3 models: txt2img, then img2img, inpaint, outpaint, hires fix, DPM++ 2M
with a shift and the family's tiny ControlNet (FLUX.1's with hires fix too) from its image,
the family's tiny IP-Adapter (FLUX.1: XLabs' layout; SD 3.x: InstantX's, with a SigLIP
encoder) with its image as the image prompt, the family's tiny LoRA by its prompt tag, and an
outpaint of it by the tiny FLUX.1 Fill model; what these families can't do yet is refused
by the form, naming the family, and no job is made."""

import io
import urllib.error

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from gallery.models import Image
from generation.loras.services import check_lora_upload, lora_create
from generation.models import (
    DiffusionModel,
    GenerationJob,
    JobStatus,
    ModelFamily,
    ModelKind,
    SourceKind,
)
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.e2e.http import StudioClient
from tests.e2e.test_every_mode_end_to_end import mask_data_url, wait_until_done
from tests.lora_builders import flux_peft_lora_bytes, sd3_peft_lora_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password-1"


@pytest.fixture
def flow_models(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_flux, build_tiny_sd3

    root = tmp_path_factory.mktemp("flow-models")
    return {
        "flux": DiffusionModel.objects.create(
            name="tiny-flux1", source=str(build_tiny_flux(root / "flux")),
            source_kind=SourceKind.FOLDER, family=ModelFamily.FLUX1,
        ),
        "sd3": DiffusionModel.objects.create(
            name="tiny-sd3", source=str(build_tiny_sd3(root / "sd3")),
            source_kind=SourceKind.FOLDER, family=ModelFamily.SD3,
        ),
    }


@pytest.fixture
def flow_controlnets(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_flux_controlnet, build_tiny_sd3_controlnet

    root = tmp_path_factory.mktemp("flow-controlnets")
    return {
        "flux": DiffusionModel.objects.create(
            name="canny-flux1", source=str(build_tiny_flux_controlnet(root / "flux")),
            kind=ModelKind.CONTROLNET, family=ModelFamily.FLUX1,
        ),
        "sd3": DiffusionModel.objects.create(
            name="canny-sd3", source=str(build_tiny_sd3_controlnet(root / "sd3")),
            kind=ModelKind.CONTROLNET, family=ModelFamily.SD3,
        ),
    }


@pytest.fixture
def flow_ip_adapters(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_flux_ip_adapter, build_tiny_sd3_ip_adapter

    root = tmp_path_factory.mktemp("flow-ip-adapters")
    return {
        "flux": DiffusionModel.objects.create(
            name="ip-adapter-flux1", source=str(build_tiny_flux_ip_adapter(root / "flux")),
            source_kind=SourceKind.FOLDER, kind=ModelKind.IP_ADAPTER, family=ModelFamily.FLUX1,
        ),
        "sd3": DiffusionModel.objects.create(
            name="ip-adapter-sd3", source=str(build_tiny_sd3_ip_adapter(root / "sd3")),
            source_kind=SourceKind.FOLDER, kind=ModelKind.IP_ADAPTER, family=ModelFamily.SD3,
        ),
    }


@pytest.fixture
def flux_fill(tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_flux_fill

    folder = build_tiny_flux_fill(tmp_path_factory.mktemp("flow-fill") / "flux-fill")
    return DiffusionModel.objects.create(
        name="tiny-flux1-fill", source=str(folder), source_kind=SourceKind.FOLDER,
        family=ModelFamily.FLUX1,
    )


def test_flow_families_generate_txt2img_through_the_worker(
    studio_processes, flow_models, flow_controlnets, flow_ip_adapters, flux_fill
):
    user = User.objects.create_user("fl", "fl@example.org", PASSWORD)
    team = Team.objects.create(name="Flow")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="Flow families")
    client = StudioClient(studio_processes["base_url"])
    client.log_in("fl", PASSWORD)

    def post(**fields):
        params = {"prompt": "a cat on the mat", "negative_prompt": "blurry", "steps": 4,
                  "guidance_scale": 4, "width": 80, "height": 64, "seed": 7, **fields}
        try:
            return client.post(f"/projects/{project.pk}/generate/", params,
                               headers={"HX-Request": "true"})
        except urllib.error.HTTPError as error:  # the form's refusal, as the page gets it
            return error.code, error.read().decode()

    # Each family's tiny LoRA in the team's library (their width tells no family: chosen at
    # upload, as a user would), called up by its tag in the prompt.
    builders = {"flux": flux_peft_lora_bytes, "sd3": sd3_peft_lora_bytes}
    for family, model in flow_models.items():
        upload = SimpleUploadedFile(f"{family}.safetensors", builders[family](tiny=True, seed=3))
        lora_create(team=team, user=user, checked=check_lora_upload(team=team, upload=upload),
                    name=f"{family}-ink", family=model.family)

    jobs = {}
    for family, model in flow_models.items():
        status, body = post(model=model.pk, batch_size=2)
        assert status == 200, body[:500]
        jobs[family] = GenerationJob.objects.get(project=project, model=model)
    done = wait_until_done(jobs.values())

    for family, job in jobs.items():
        job = done[job.pk]
        assert job.status == JobStatus.FINISHED, (family, job.error)
        images = Image.objects.filter(job=job)
        assert images.count() == 2, family
        for image in images:
            assert (image.width, image.height) == (80, 64)
            assert f"Model: tiny-{'flux1' if family == 'flux' else 'sd3'}" in image.parameters
            assert "Sampler: Euler" in image.parameters
            status, body = client.get(image.file_url())
            assert status == 200, family
            assert PILImage.open(io.BytesIO(body)).info["parameters"] == image.parameters

    # Every other mode from each family's first image (80x64: sides of multiples of 16).
    by_mode = {}
    for family, model in flow_models.items():
        source = Image.objects.filter(job=jobs[family]).first()
        modes = {
            "img2img": {"source_image": source.pk, "strength": 0.5},
            "inpaint": {"source_image": source.pk, "strength": 0.75,
                        "mask_data": mask_data_url((80, 64), (16, 16, 64, 48))},
            "outpaint": {"source_image": source.pk, "outpaint_right": 16},
            "hires fix": {"hires_fix": "on", "hires_scale": 2, "hires_steps": 2,
                          "hires_strength": 0.5},
            "DPM++ 2M": {"sampler": "DPM++ 2M", "shift": 3},
            "ControlNet": {"control_model": flow_controlnets[family].pk,
                           "control_image": source.pk, "control_scale": 1},
            "IP-Adapter": {"ip_adapter_model": flow_ip_adapters[family].pk,
                           "ip_adapter_image": source.pk, "ip_adapter_scale": 0.8},
            "LoRA": {"prompt": f"a cat on the mat <lora:{family}-ink:0.8>"},
        }
        if family == "flux":  # SD 3.x's ControlNet runs for txt2img only
            modes["ControlNet hires fix"] = {**modes["ControlNet"], **modes["hires fix"]}
            modes["Fill outpaint"] = {"model": flux_fill.pk, "source_image": source.pk,
                                      "outpaint_right": 16, "guidance_scale": 30}
        for mode, fields in modes.items():
            before = set(GenerationJob.objects.values_list("pk", flat=True))
            status, body = post(**{"model": model.pk, **fields})
            assert status == 200, (family, mode, body[:500])
            by_mode[family, mode] = GenerationJob.objects.exclude(pk__in=before).get()
    done = wait_until_done(by_mode.values())

    sizes = {"img2img": (80, 64), "inpaint": (80, 64), "outpaint": (96, 64),
             "hires fix": (160, 128), "DPM++ 2M": (80, 64), "ControlNet": (80, 64),
             "ControlNet hires fix": (160, 128), "IP-Adapter": (80, 64),
             "Fill outpaint": (96, 64), "LoRA": (80, 64)}
    for (family, mode), job in by_mode.items():
        job = done[job.pk]
        assert job.status == JobStatus.FINISHED, (family, mode, job.error)
        image = Image.objects.get(job=job)
        assert (image.width, image.height) == sizes[mode], (family, mode)
        status, body = client.get(image.file_url())
        assert status == 200, (family, mode)
    parameters = {key: Image.objects.get(job=job).parameters for key, job in by_mode.items()}
    for family in flow_models:
        assert "Denoising strength: 0.5" in parameters[family, "img2img"]
        assert "Hires upscale: 2" in parameters[family, "hires fix"]
        assert "Sampler: DPM++ 2M" in parameters[family, "DPM++ 2M"]
        assert "Shift: 3" in parameters[family, "DPM++ 2M"]
        assert "ControlNet 0" in parameters[family, "ControlNet"]
        assert f"<lora:{family}-ink:0.8>" in parameters[family, "LoRA"]
        assert "Lora hashes: " in parameters[family, "LoRA"]
        ip_adapter_job = done[by_mode[family, "IP-Adapter"].pk]
        source = Image.objects.filter(job=jobs[family]).first()
        assert ip_adapter_job.ip_adapter_image_id == source.pk
    assert "ControlNet 0" in parameters["flux", "ControlNet hires fix"]

    jobs_before = GenerationJob.objects.filter(project=project).count()
    status, body = post(model=flow_models["flux"].pk, clip_skip=2)
    assert status == 422, body[:300]
    assert "FLUX.1 models don&#x27;t support clip skip in the studio yet" in body
    assert GenerationJob.objects.filter(project=project).count() == jobs_before
