"""LoRA jobs on the worker, in this process, on the tiny SD1.5 model: a LoRA changes a
fixed-seed image, the next job without one is exactly as before, tags never reach the text
encoder, and the PNG records the LoRAs as A1111 does."""

import io
import json
from unittest import mock

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import job_execute
from generation.loras.services import LoraChoice, check_lora_upload, lora_create
from generation.models import DiffusionModel, GenerationJob, JobStatus
from generation.parameters_import import read_png_parameters
from generation.services import job_create
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.gpu_workers.test_loras import build_lora

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def lora_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_LORA_CACHE_DIR", str(tmp_path / "lora-cache"))


@pytest.fixture(scope="module")
def lora_file(tiny_model_dir, tmp_path_factory):
    """A random LoRA on the tiny UNet's attention layers, as diffusers saves LoRAs."""
    return build_lora(tiny_model_dir, tmp_path_factory.mktemp("lora"), seed=7).source


@pytest.fixture
def studio(tiny_model_dir, lora_file):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    with open(lora_file, "rb") as opened:
        upload = SimpleUploadedFile("ink.safetensors", opened.read())
    # The tiny model's widths tell no family: chosen at upload, as a user would.
    lora = lora_create(team=team, user=user, checked=check_lora_upload(team=team, upload=upload),
                       name="ink", family="sd15")
    return {"user": user, "project": project, "model": model, "lora": lora}


def run_job(studio, prompt="a red fox, watercolor", loras=()):
    params = {
        "model": studio["model"], "prompt": prompt, "negative_prompt": "blurry", "steps": 4,
        "guidance_scale": 6.5, "width": 64, "height": 64, "seed": 1234, "loras": list(loras),
    }
    with mock.patch("generation.services.enqueue_generation"):
        job = job_create(user=studio["user"], project=studio["project"], params=params)
    with mock.patch("generation.execution.publish"), mock.patch(
        "generation.services.publish"
    ):
        job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, job.error
    image = Image.objects.get(job=job)
    png = PILImage.open(io.BytesIO(image.file.read()))
    return job, image, png


def pixels(png):
    return np.asarray(png.convert("RGB"))


def test_a_lora_changes_the_image_and_the_next_job_without_it_is_unchanged(studio):
    _, _, before = run_job(studio)
    _, _, with_lora = run_job(studio, loras=[LoraChoice(studio["lora"], 0.9)])
    _, _, after = run_job(studio)

    assert not np.array_equal(pixels(before), pixels(with_lora))
    assert pixels(after).tobytes() == pixels(before).tobytes()


def test_a_prompt_tag_is_applied_and_never_reaches_the_text_encoder(studio):
    lora = studio["lora"]
    _, _, picked = run_job(studio, loras=[LoraChoice(lora, 0.8)])
    # The same LoRA and weight written in the prompt: the encoder gets the same text.
    _, _, tagged = run_job(studio, prompt="a red fox, watercolor <lora:ink:0.8>",
                           loras=[LoraChoice(lora, 0.8, in_prompt=True)])
    assert pixels(tagged).tobytes() == pixels(picked).tobytes()


def test_the_png_records_the_loras_as_a1111_does(studio):
    lora = studio["lora"]
    job, image, png = run_job(studio, prompt="a red fox <lora:ink:0.5>",
                              loras=[LoraChoice(lora, 0.5, in_prompt=True)])
    assert png.info["parameters"] == (
        "a red fox <lora:ink:0.5>\n"
        "Negative prompt: blurry\n"
        "Steps: 4, Sampler: Euler, Schedule type: Automatic, CFG scale: 6.5, Seed: 1234, "
        "Size: 64x64, Model: tiny-sd15, "
        f'Lora hashes: "ink: {lora.addnet_hash[:12]}", Version: studio 0.1.0'
    )
    assert image.parameters == png.info["parameters"]
    spec = json.loads(png.info["studio"])
    assert spec["loras"] == [
        {"name": "ink", "sha256": lora.sha256, "weight": 0.5, "in_prompt": True}
    ]
    assert spec["prompt"] == "a red fox <lora:ink:0.5>"


def test_a_picked_lora_is_written_into_the_infotext_prompt_and_imports_back(studio):
    lora = studio["lora"]
    _, image, png = run_job(studio, prompt="a red fox", loras=[LoraChoice(lora, 0.75)])
    assert png.info["parameters"].startswith("a red fox <lora:ink:0.75>\n")
    assert f'Lora hashes: "ink: {lora.addnet_hash[:12]}"' in png.info["parameters"]
    assert image.prompt == "a red fox"

    # Dropped back onto the form, the picked LoRA returns as a tag (the spec's list of
    # LoRAs is applied, not reported).
    imported = read_png_parameters(io.BytesIO(image.file.open("rb").read()), max_bytes=10**7)
    assert imported.values["prompt"] == "a red fox <lora:ink:0.75>"
    assert not [note for note in imported.not_applied if "loras" in note.lower()[:6]]


def test_a_job_whose_lora_file_changed_fails_with_a_reason(studio):
    lora = studio["lora"]
    with open(lora.file.path, "ab") as opened:
        opened.write(b"tampered")
    params = {
        "model": studio["model"], "prompt": "x", "steps": 2, "guidance_scale": 6.5,
        "width": 64, "height": 64, "seed": 1, "loras": [LoraChoice(lora, 1.0)],
    }
    with mock.patch("generation.services.enqueue_generation"):
        job = job_create(user=studio["user"], project=studio["project"], params=params)
    with mock.patch("generation.execution.publish"), mock.patch("generation.services.publish"):
        job_execute(job_id=job.pk)
    job = GenerationJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.FAILED
    assert "The LoRA ink changed or is damaged" in job.error
