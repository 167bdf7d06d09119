"""An SDXL job end to end in this process, as test_job_execution.py runs SD1.5 ones: the
studio's job, the worker's engine on the tiny SDXL model, the PNG with its parameters."""

import io
import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import job_execute
from generation.models import (
    DiffusionModel,
    GenerationJob,
    JobStatus,
    ModelFamily,
    SourceKind,
)
from studio import __version__ as studio_version
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import published_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def sdxl_job(tiny_sdxl_model_dir):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(
        name="tiny-sdxl",
        source=str(tiny_sdxl_model_dir),
        source_kind=SourceKind.FOLDER,
        family=ModelFamily.SDXL,
        default_width=1024,
        default_height=1024,
    )
    return GenerationJob.objects.create(
        project=project, created_by=user, model=model, prompt="a lighthouse at dusk",
        negative_prompt="", steps=4, guidance_scale=5.0, width=64, height=48, seed=99,
        clip_skip=2,
    )


def run(job):
    with published_events() as events:
        job_execute(job_id=job.pk)
    return events


def test_an_sdxl_job_makes_the_pipelines_image_with_its_parameters(sdxl_job, tiny_sdxl_model_dir):
    events = run(sdxl_job)

    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 2, 3, 4]
    assert events[-1]["type"] == "job.finished"
    sdxl_job.refresh_from_db()
    assert sdxl_job.status == JobStatus.FINISHED
    image = Image.objects.get(job=sdxl_job)
    png = PILImage.open(io.BytesIO(image.file.read()))
    assert png.size == (64, 48)
    assert png.info["parameters"] == (
        "a lighthouse at dusk\n"
        "Steps: 4, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: 99, "
        "Size: 64x48, Model: tiny-sdxl, "
        f"Clip skip: 2, Version: studio {studio_version}"
    )
    spec = json.loads(png.info["studio"])
    assert spec["model"]["source"] == str(tiny_sdxl_model_dir)
    assert (spec["seed"], spec["clip_skip"]) == (99, 2)
    assert spec["scheduler"]["class"] == "EulerDiscreteScheduler"
    # The same spec through plain diffusers gives the same pixels: A1111's clip skip 2 is
    # the SDXL pipeline's clip_skip=1, an empty negative prompt is none.
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt="a lighthouse at dusk", num_inference_steps=4, guidance_scale=5.0, width=64,
        height=48, clip_skip=1, generator=torch.Generator("cpu").manual_seed(99),
    ).images[0]
    assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(expected))


def test_an_sdxl_hires_fix_job_redraws_at_the_larger_size(sdxl_job):
    GenerationJob.objects.filter(pk=sdxl_job.pk).update(
        hires_scale=1.5, hires_steps=4, hires_strength=0.5
    )

    events = run(sdxl_job)

    # 4 first-pass steps, then int(4 * 0.5) = 2 img2img steps at 96x72, counted on.
    progress = [e for e in events if e["type"] == "job.progress"]
    assert [(e["step"], e["total"]) for e in progress] == [(n, 6) for n in range(1, 7)]
    image = Image.objects.get(job=sdxl_job)
    assert (image.width, image.height) == (96, 72)
    assert "Size: 64x48, Model: tiny-sdxl, Denoising strength: 0.5, Clip skip: 2, " in (
        image.parameters
    )


def test_the_library_accepts_the_sdxl_folder_and_single_file_as_sdxl(
    tiny_sdxl_model_dir, tmp_path
):
    from django.core.exceptions import ValidationError

    from generation.library.sources import validate_folder, validate_single_file
    from generation.models import ModelKind
    from gpu_workers.checkpoints import save_original_layout

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model_dir, dtype=torch.float32)
    single_file = str(save_original_layout(pipe, tmp_path / "tiny-sdxl.safetensors"))
    folder = str(tiny_sdxl_model_dir)

    assert validate_folder(folder, ModelKind.CHECKPOINT, ModelFamily.SDXL) == folder
    assert validate_single_file(single_file, ModelKind.CHECKPOINT, ModelFamily.SDXL) == (
        single_file
    )
    with pytest.raises(ValidationError, match="This is an SDXL model"):
        validate_folder(folder, ModelKind.CHECKPOINT, ModelFamily.SD15)
    with pytest.raises(ValidationError, match="is a Stable Diffusion XL checkpoint"):
        validate_single_file(single_file, ModelKind.CHECKPOINT, ModelFamily.SD15)


def test_register_model_gives_sdxl_models_sdxls_size_by_default(tiny_sdxl_model_dir):
    from django.core.management import call_command

    call_command("register_model", str(tiny_sdxl_model_dir), "--name", "XL", "--family", "sdxl",
                 stdout=io.StringIO())
    call_command("register_model", "owner/sd-model", "--name", "SD", stdout=io.StringIO())
    call_command("register_model", "owner/xl-wide", "--name", "XL wide", "--family", "sdxl",
                 "--width", "1216", "--height", "832", stdout=io.StringIO())

    sizes = {
        model.name: (model.family, model.default_width, model.default_height)
        for model in DiffusionModel.objects.filter(name__in=["XL", "SD", "XL wide"])
    }
    assert sizes == {
        "XL": ("sdxl", 1024, 1024),
        "SD": ("sd15", 512, 512),
        "XL wide": ("sdxl", 1216, 832),
    }
