"""The worker side of a job, in this process, on the tiny model: claim, run, save, report."""

import base64
import io
import json
import re
import time
from unittest import mock

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import F
from django.utils import timezone
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import job_execute, source_and_mask
from generation.leases import lease_deadline
from generation.models import DiffusionModel, GenerationJob, JobMode, JobStatus
from generation.tasks import run_generation_job
from gpu_workers.pipelines import load_pipeline
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import published_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(tiny_model_dir):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    return GenerationJob.objects.create(
        project=project, created_by=user, model=model, prompt="a red fox, watercolor",
        negative_prompt="blurry, low quality", steps=5, guidance_scale=6.5, width=64,
        height=48, seed=1234,
    )


def run(job):
    with published_events() as events:
        job_execute(job_id=job.pk)
    return events


def test_runs_the_job_and_reports_every_step(job):
    events = run(job)
    types = [event["type"] for event in events]
    assert types[0] == "job.started"
    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 2, 3, 4, 5]
    assert types[-1] == "job.finished"
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert job.attempts == 1
    assert job.progress_step == 5
    assert events[-1]["images"][0]["id"] == Image.objects.get(job=job).pk


def test_progress_carries_a_small_preview_image(job):
    events = run(job)
    progress = [event for event in events if event["type"] == "job.progress"]
    # The first preview comes at once, later ones at most about 4 per second.
    assert progress[0]["preview"].startswith("data:image/jpeg;base64,")
    preview = PILImage.open(io.BytesIO(base64.b64decode(progress[0]["preview"].split(",")[1])))
    assert preview.size == (64 // 8, 48 // 8)
    assert "preview" not in progress[-1]  # the image itself follows the last step
    # Kept for those who poll (A1111's /progress): the last one sent.
    job.refresh_from_db()
    assert job.latest_preview() == [event for event in progress if "preview" in event][-1][
        "preview"
    ]


def test_saves_a_png_with_its_parameters(job):
    run(job)
    image = Image.objects.get(job=job)
    png = PILImage.open(io.BytesIO(image.file.read()))
    assert png.size == (64, 48)
    assert png.info["parameters"] == (
        "a red fox, watercolor\n"
        "Negative prompt: blurry, low quality\n"
        "Steps: 5, Sampler: Euler, Schedule type: Automatic, CFG scale: 6.5, Seed: 1234, "
        "Size: 64x48, "
        "Model: tiny-sd15, Version: studio 0.1.0"
    )
    spec = json.loads(png.info["studio"])
    assert spec["seed"] == 1234
    assert spec["scheduler"]["class"] == "EulerDiscreteScheduler"
    assert spec["scheduler"]["config"]["beta_schedule"] == "scaled_linear"
    assert spec["versions"]["diffusers"].startswith("0.42")
    assert spec["model"]["source"] == job.model.source


def test_a_karras_sampler_is_written_as_a1111_writes_it(job):
    GenerationJob.objects.filter(pk=job.pk).update(sampler="DPM++ 2M Karras")
    run(job)
    png = PILImage.open(Image.objects.get(job=job).file)
    assert "Steps: 5, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5," in (
        png.info["parameters"]
    )
    spec = json.loads(png.info["studio"])
    assert spec["sampler"] == "DPM++ 2M Karras"
    assert spec["scheduler"]["class"] == "DPMSolverMultistepScheduler"
    assert spec["scheduler"]["config"]["use_karras_sigmas"] is True


def test_the_models_default_sampler_applies_when_the_job_names_none(job):
    DiffusionModel.objects.filter(pk=job.model_id).update(default_sampler="DDIM")
    run(job)
    png = PILImage.open(Image.objects.get(job=job).file)
    assert "Sampler: DDIM," in png.info["parameters"]


def test_a_batch_size_job_saves_one_image_per_seed(job):
    GenerationJob.objects.filter(pk=job.pk).update(batch_size=3)
    events = run(job)
    images = Image.objects.filter(job=job).order_by("seed")
    assert [image.seed for image in images] == [1234, 1235, 1236]
    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 2, 3, 4, 5]
    assert len(events[-1]["images"]) == 3
    assert "Seed: 1235," in images[1].parameters
    assert len({image.file.read() for image in images}) == 3


def test_an_img2img_job_starts_from_its_source_image(job):
    source = io.BytesIO()
    PILImage.effect_noise((96, 80), 50).convert("RGB").save(source, format="PNG")
    name = default_storage.save("uploads/test/source.png", ContentFile(source.getvalue()))
    GenerationJob.objects.filter(pk=job.pk).update(
        mode=JobMode.IMG2IMG, source_upload=name, strength=0.6, clip_skip=2
    )

    events = run(job)

    # 5 steps at strength 0.6: A1111 runs int(5 * 0.6) = 3 of them.
    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 2, 3]
    image = Image.objects.get(job=job)
    assert (image.width, image.height) == (64, 48)  # resized to the job's size
    assert "Model: tiny-sd15, Denoising strength: 0.6, Clip skip: 2, Version:" in (
        image.parameters
    )
    spec = json.loads(PILImage.open(image.file).info["studio"])
    assert (spec["mode"], spec["strength"]) == ("img2img", 0.6)


def stored_png(image, name):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return default_storage.save(f"uploads/test/{name}.png", ContentFile(buffer.getvalue()))


def test_an_inpaint_job_redraws_only_inside_its_mask(job):
    source = PILImage.effect_noise((64, 48), 40).convert("RGB")
    mask = PILImage.new("L", (64, 48), 0)
    mask.paste(255, (16, 8, 48, 40))
    GenerationJob.objects.filter(pk=job.pk).update(
        mode=JobMode.INPAINT, source_upload=stored_png(source, "source"),
        mask_upload=stored_png(mask, "mask"), strength=1.0,
    )

    events = run(job)

    assert events[-1]["type"] == "job.finished", events[-1]
    result = np.asarray(PILImage.open(Image.objects.get(job=job).file).convert("RGB")).astype(int)
    original = np.asarray(source).astype(int)
    # The tiny VAE does not reproduce pixels, so compare how much each region moved.
    outside = np.abs(result - original)[:4, :].mean()
    inside = np.abs(result - original)[16:32, 24:40].mean()
    assert inside > outside
    assert "Denoising strength: 1," in Image.objects.get(job=job).parameters


def test_an_outpaint_job_extends_the_canvas(job):
    source = PILImage.new("RGB", (32, 48), (200, 30, 30))
    GenerationJob.objects.filter(pk=job.pk).update(
        mode=JobMode.OUTPAINT, source_upload=stored_png(source, "source"),
        outpaint_left=16, outpaint_right=16, strength=0.5,
    )

    events = run(job)

    assert events[-1]["type"] == "job.finished", events[-1]
    image = Image.objects.get(job=job)
    assert (image.width, image.height) == (64, 48)
    # Outpainting draws the new area from noise: every step runs, whatever the strength.
    assert [e["step"] for e in events if e["type"] == "job.progress"][-1] == 5


def test_outpaint_canvas_and_mask(job):
    source = PILImage.new("RGB", (10, 10), (0, 200, 0))
    GenerationJob.objects.filter(pk=job.pk).update(
        mode=JobMode.OUTPAINT, source_upload=stored_png(source, "source"),
        width=64, height=48, outpaint_left=16, outpaint_top=8,
    )
    job.refresh_from_db()

    canvas, mask = source_and_mask(job)

    assert canvas.size == mask.size == (64, 48)
    assert canvas.getpixel((40, 30)) == (0, 200, 0)  # the source, resized into its box
    assert mask.getpixel((4, 4)) == 255  # added: redrawn
    assert mask.getpixel((20, 12)) == 255  # the seam into the source: redrawn
    assert mask.getpixel((40, 30)) == 0  # the source: kept
    assert mask.getpixel((63, 47)) == 0  # not extended on the right or bottom: no seam


def test_an_img2img_job_whose_source_was_deleted_fails_with_a_reason(job):
    GenerationJob.objects.filter(pk=job.pk).update(mode=JobMode.IMG2IMG)
    events = run(job)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "source image was deleted" in job.error
    assert events[-1]["type"] == "job.failed"


def test_hires_fix_upscales_then_redraws_at_the_larger_size(job):
    GenerationJob.objects.filter(pk=job.pk).update(
        hires_scale=1.5, hires_steps=4, hires_strength=0.5
    )

    events = run(job)

    # 5 first-pass steps, then int(4 * 0.5) = 2 hires steps, counted on.
    progress = [e for e in events if e["type"] == "job.progress"]
    assert [(e["step"], e["total"]) for e in progress] == [(n, 7) for n in range(1, 8)]
    image = Image.objects.get(job=job)
    assert (image.width, image.height) == (96, 72)
    assert PILImage.open(image.file).size == (96, 72)
    assert image.parameters.endswith(
        "Size: 64x48, Model: tiny-sd15, Denoising strength: 0.5, Hires upscale: 1.5, "
        "Hires steps: 4, Hires upscaler: Lanczos, Version: studio 0.1.0"
    )


def test_a_second_delivery_does_not_run_it_again(job):
    run(job)
    assert run(job) == []
    job.refresh_from_db()
    assert job.attempts == 1
    assert Image.objects.filter(job=job).count() == 1


def test_same_seed_gives_the_same_pixels(job):
    run(job)
    again = GenerationJob.objects.get(pk=job.pk)
    again.pk = None
    again.status = JobStatus.QUEUED
    again.save()
    run(again)
    first, second = (PILImage.open(Image.objects.get(job=j).file) for j in (job, again))
    assert first.tobytes() == second.tobytes()


def test_a_model_that_cannot_load_fails_the_job_with_a_reason(job):
    DiffusionModel.objects.filter(pk=job.model_id).update(source="/nowhere/no-such-model")
    events = run(job)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("The worker could not generate this image")
    assert events[-1]["type"] == "job.failed"
    assert events[-1]["error"] == job.error
    assert not Image.objects.filter(job=job).exists()


def test_a_running_job_with_a_live_lease_is_not_taken(job, settings):
    from django.utils import timezone

    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, attempts=1,
        lease_expires_at=timezone.now() + timezone.timedelta(seconds=60),
    )
    assert run(job) == []
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_message_for_an_ended_job_is_simply_done(job):
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.FINISHED)
    with mock.patch.object(run_generation_job, "retry") as retry:
        run_generation_job.apply(args=[job.pk])
    retry.assert_not_called()


def test_an_attempt_that_lost_the_job_to_another_drops_its_result(job):
    def take_over_at_step_2(payload):
        if payload["type"] == "job.progress" and payload["step"] == 2:
            # Another worker took the job over (this attempt's lease had lapsed).
            GenerationJob.objects.filter(pk=job.pk).update(claims=F("claims") + 1)

    with published_events(on_event=take_over_at_step_2) as events:
        job_execute(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.claims) == (JobStatus.RUNNING, 2)  # the other attempt's now
    assert not Image.objects.filter(job=job).exists()
    assert [e["type"] for e in events if e["type"] != "job.progress"][-1] == "job.started"
    assert [e["step"] for e in events if e["type"] == "job.progress"][-1] <= 3


def test_the_lease_is_renewed_while_the_model_loads(job, settings):
    settings.STUDIO_JOB_LEASE_S = 0.2  # renewed every 0.05 s while no step comes

    def slow_load(*args, **kwargs):
        time.sleep(0.5)  # longer than the lease
        return load_pipeline(*args, **kwargs)

    with (
        mock.patch("gpu_workers.engine.load_pipeline", side_effect=slow_load),
        mock.patch("generation.execution.publish"),
        mock.patch("generation.leases.lease_deadline", wraps=lease_deadline) as deadline,
    ):
        job_execute(job_id=job.pk)

    # The claim, one per step (5) and several while the model loaded.
    assert deadline.call_count >= 1 + 5 + 4
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.FINISHED, 1)


def test_a_running_job_whose_worker_died_is_taken_back_and_finished_once(job):
    from generation.sweeper import sweep

    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, attempts=1, claims=1, progress_step=2,
        lease_expires_at=timezone.now() - timezone.timedelta(seconds=1),
    )
    with mock.patch("generation.sweeper.publish"), \
            mock.patch("generation.sweeper.enqueue_generation") as enqueue:
        assert sweep()["job_lapsed_queued"] == 1
    enqueue.assert_called_once_with(job.pk)
    events = run(job)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.claims) == (JobStatus.FINISHED, 2, 2)
    assert events[-1]["type"] == "job.finished"
    assert Image.objects.filter(job=job).count() == 1


def test_a_running_job_canceled_by_its_owner_stops_within_a_step_or_two(job):
    GenerationJob.objects.filter(pk=job.pk).update(steps=40)

    def cancel_at_step_2(payload):
        if payload["type"] == "job.progress" and payload["step"] == 2:
            GenerationJob.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())

    with published_events(on_event=cancel_at_step_2) as events:
        job_execute(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED
    # The worker sees the flag as it reports step 2; the engine, a step or so ahead of the
    # reports, stops at its next step.
    stopped_at = int(re.fullmatch(r"Canceled after step (\d+) of 40\.", job.error)[1])
    assert 2 <= stopped_at < 40
    assert [e["step"] for e in events if e["type"] == "job.progress"] == [
        *range(1, stopped_at + 1)
    ]
    assert events[-1]["type"] == "job.canceled"
    assert not Image.objects.filter(job=job).exists()


def test_a_message_runs_the_job_whose_turn_it_is(job):
    def copy_of_job(**fields):
        copy = GenerationJob.objects.get(pk=job.pk)
        copy.pk = None
        for name, value in fields.items():
            setattr(copy, name, value)
        copy.save()
        return copy

    flood = [copy_of_job() for _ in range(2)]
    other = User.objects.create_user("bo", "bo@example.org", "pw")
    Membership.objects.create(team=job.project.team, user=other, role=Role.EDITOR)
    theirs = copy_of_job(created_by=other)

    run(job)  # the first in line: ann's oldest job
    # ann has had a turn: on the message of her next job, bo's job runs.
    run(GenerationJob.objects.get(pk=flood[1].pk))

    assert GenerationJob.objects.get(pk=theirs.pk).status == JobStatus.FINISHED
    assert GenerationJob.objects.get(pk=flood[0].pk).status == JobStatus.QUEUED
    assert GenerationJob.objects.get(pk=flood[1].pk).status == JobStatus.QUEUED


def test_a_variations_job_keeps_its_seed_and_counts_variation_seeds_up(job):
    GenerationJob.objects.filter(pk=job.pk).update(
        batch_size=2, variation_seed=500, variation_strength=0.2
    )
    run(job)
    images = list(Image.objects.filter(job=job).order_by("pk"))
    assert [image.seed for image in images] == [1234, 1234]
    assert "Model: tiny-sd15, Variation seed: 500, Variation seed strength: 0.2," in (
        images[0].parameters
    )
    assert "Variation seed: 501," in images[1].parameters
    assert PILImage.open(images[0].file).tobytes() != PILImage.open(images[1].file).tobytes()


def test_each_step_writes_the_job_once(job):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries, mock.patch("generation.execution.publish"):
        job_execute(job_id=job.pk)

    job_table = 'UPDATE "generation_generationjob"'
    updates = [query["sql"] for query in queries if query["sql"].startswith(job_table)]
    set_clauses = [sql.split("WHERE")[0] for sql in updates]
    steps = [clause for clause in set_clauses if '"status"' not in clause]
    # One UPDATE per step: its progress and the lease renewal together.
    assert len(steps) == 5
    assert all('"progress_step"' in clause and '"lease_expires_at"' in clause for clause in steps)


def test_progress_is_reported_at_most_every_interval_and_at_the_first_and_last_step(
    job, settings
):
    """With many jobs in a batch on a fast GPU, a write and an event per step per job would
    cost more than the steps: between its first and last step a job reports at most every
    STUDIO_PROGRESS_INTERVAL_S."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.STUDIO_PROGRESS_INTERVAL_S = 3600
    with CaptureQueriesContext(connection) as queries:
        events = run(job)

    assert [e["step"] for e in events if e["type"] == "job.progress"] == [1, 5]
    job_table = 'UPDATE "generation_generationjob"'
    updates = [query["sql"].split("WHERE")[0] for query in queries
               if query["sql"].startswith(job_table)]
    steps = [clause for clause in updates if '"status"' not in clause]
    assert len(steps) == 2 and all('"progress_step"' in clause for clause in steps)
    job.refresh_from_db()
    assert (job.status, job.progress_step, job.attempts) == (JobStatus.FINISHED, 5, 1)


def test_pngs_are_encoded_before_the_finishing_transaction(job):
    """The transaction that finishes a job (and holds its row) only writes files and rows:
    the images' PNGs, all of them, are compressed before it opens."""
    from django.db import connection

    import gallery.services

    GenerationJob.objects.filter(pk=job.pk).update(batch_size=3)
    depths = {}

    def encoding(**kwargs):
        depths["encoded"] = len(connection.savepoint_ids)
        return gallery.services.generated_pngs(**kwargs)

    def creating(**kwargs):
        depths.setdefault("created", len(connection.savepoint_ids))
        return gallery.services.image_create_from_png(**kwargs)

    with (
        mock.patch("generation.execution.generated_pngs", side_effect=encoding),
        mock.patch("generation.execution.image_create_from_png", side_effect=creating),
    ):
        run(job)
    assert depths["created"] == depths["encoded"] + 1
    infotexts = [PILImage.open(image.file).info["parameters"] for image in job.images.all()]
    assert len(infotexts) == 3 and all("Seed: " in text for text in infotexts)
