"""Training runs: started from the subject's page with a preset and an estimate, queued on
the `train` queue on commit, claimed once, trained on the tiny model on the CPU (the loss
on the subject's images goes down), streamed live, and ending as a LoRA in the team's
library that the studio stacks and that changes a fixed-seed image. Cancel works, queued
or running; failed and canceled runs keep their logs."""

import io
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from PIL import Image as PILImage

from gallery.models import Image
from generation.execution import job_execute
from generation.loras.services import LoraChoice
from generation.models import DiffusionModel, JobStatus
from generation.services import job_create
from generation.sweeper import sweep
from generation.training.execution import training_claim, training_execute
from generation.training.models import TrainingRun, TrainingSample
from gpu_workers.training_plan import PRESETS, estimate
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import StudioTestCase
from tests.subject_builders import image_bytes, make_run, make_subject

pytestmark = pytest.mark.django_db

TRAINING_FORM = {
    "preset": "custom", "steps": "40", "learning_rate": "0.0002", "rank": "8",
    "resolution": "512", "batch_size": "1", "seed": "7", "class_images": "50",
    "sample_every": "10", "sample_prompt": "",
}


class TrainingStartTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor)
        cls.url = reverse("training_start", args=[cls.subject.pk])

    def post(self, user=None, **changes):
        self.client.force_login(user or self.editor)
        data = {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM, **changes}
        with mock.patch("generation.training.services.enqueue_training") as enqueue:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(self.url, data)
        return response, enqueue

    def test_a_run_is_queued_on_commit_with_the_posted_settings(self):
        with mock.patch("generation.training.services.publish") as publish:
            response, enqueue = self.post(prior_preservation="on")
        run = TrainingRun.objects.get()
        self.assertRedirects(response, run.get_absolute_url())
        enqueue.assert_called_once_with(run.pk)
        self.assertEqual(publish.call_args.args[1]["type"], "training.queued")
        self.assertEqual(
            (run.steps, run.learning_rate, run.rank, run.resolution, run.seed, run.class_images),
            (40, 2e-4, 8, 512, 7, 50),
        )
        self.assertEqual(run.sample_prompt, "a photo of zxq dog")
        expected = estimate(
            family="sd15", resolution=512, steps=40, batch_size=1, rank=8,
            train_text_encoder=False, prior_preservation=True, class_images=50, samples=4,
        )
        self.assertEqual(run.estimated_memory_bytes, expected.memory_bytes)

    def test_the_subject_page_shows_presets_and_an_estimate(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.subject.get_absolute_url())
        self.assertContains(response, "High quality")
        self.assertContains(response, 'id="training-presets"')
        self.assertContains(response, "of GPU memory and")
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("training_estimate", args=[self.subject.pk]),
            {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM,
             "steps": "4000", "resolution": "1024", "batch_size": "4"},
            headers={"HX-Request": "true"},
        )
        big = estimate(family="sd15", resolution=1024, steps=4000, batch_size=4, rank=8,
                       train_text_encoder=False, prior_preservation=False, class_images=0,
                       samples=400)
        self.assertContains(response, big.memory_label())
        self.assertContains(response, big.duration_label())
        response = self.client.post(
            reverse("training_estimate", args=[self.subject.pk]),
            {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM, "steps": "0"},
            headers={"HX-Request": "true"},
        )
        self.assertContains(response, "<strong>Steps</strong>: Ensure this value is greater")

    def test_bad_settings_are_refused_naming_the_field_and_queue_nothing(self):
        cases = [
            ({"steps": "0"}, "steps", "greater than or equal to 1"),
            ({"learning_rate": "0.5"}, "learning_rate", "less than or equal to 0.01"),
            ({"resolution": "500"}, "resolution", "not a multiple of 64"),
            ({"rank": "500"}, "rank", "less than or equal to 128"),
            ({"batch_size": "20"}, "batch_size", "less than or equal to 8"),
            ({"prior_preservation": "on", "class_images": ""}, "class_images",
             "needs a number of class images"),
            ({"model": "999"}, "model", "Choose a base model"),
        ]
        for change, field, message in cases:
            with self.subTest(field=field):
                response, enqueue = self.post(**change)
                self.assertEqual(response.status_code, 422)
                self.assertIn(message, " ".join(response.context["training_form"].errors[field]))
                enqueue.assert_not_called()
        self.assertFalse(TrainingRun.objects.exists())

    def test_sdxl_trains_its_unet_only_and_other_models_are_not_offered(self):
        xl = DiffusionModel.objects.create(name="xl", source="/m/xl", family="sdxl")
        response, _ = self.post(model=str(xl.pk), train_text_encoder="on")
        self.assertEqual(response.status_code, 422)
        self.assertIn("Training SDXL's text encoders is not supported",
                      " ".join(response.context["training_form"].errors["train_text_encoder"]))
        response, _ = self.post(model=str(xl.pk))
        self.assertEqual(TrainingRun.objects.get().model, xl)
        controlnet = DiffusionModel.objects.create(name="cn", source="/m/cn", kind="controlnet")
        response, _ = self.post(model=str(controlnet.pk))
        self.assertIn("Choose a base model", str(response.context["training_form"].errors))

    def test_a_subject_with_too_few_images_cannot_train(self):
        subject = make_subject(self.team, self.editor, token="few", images=2)
        self.client.force_login(self.editor)
        response = self.client.get(subject.get_absolute_url())
        self.assertContains(response, "has 2 images: add at least 3 before training")
        response = self.client.post(
            reverse("training_start", args=[subject.pk]),
            {"project": self.project.pk, "model": self.model.pk, **TRAINING_FORM},
        )
        self.assertEqual(response.status_code, 422)
        self.assertFalse(TrainingRun.objects.exists())

    def test_the_run_goes_to_the_train_queue_not_the_gpu_queue(self):
        from generation.dispatch import enqueue_training

        with override_settings(CELERY_BROKER_URL="redis://broker"), mock.patch(
            "generation.tasks.run_training.apply_async"
        ) as apply_async:
            enqueue_training(5)
        apply_async.assert_called_once_with(args=[5], queue="train")

    def test_presets_differ_as_their_names_say(self):
        self.assertLess(PRESETS["quick"]["steps"], PRESETS["balanced"]["steps"])
        self.assertLess(PRESETS["balanced"]["steps"], PRESETS["high_quality"]["steps"])


class TrainingCancelTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor)

    def test_a_queued_run_is_canceled_at_once_and_never_runs(self):
        run = make_run(self.subject, self.project, self.editor, self.model)
        self.client.force_login(self.editor)
        with mock.patch("generation.training.services.publish"):
            self.client.post(reverse("training_cancel", args=[run.pk]))
        run.refresh_from_db()
        self.assertEqual(run.status, JobStatus.CANCELED)
        self.assertEqual(training_claim(run.pk), (None, None))

    def test_a_running_run_is_asked_to_stop(self):
        run = make_run(self.subject, self.project, self.editor, self.model,
                       status=JobStatus.RUNNING)
        self.client.force_login(self.admin)  # a project admin may cancel others' runs
        response = self.client.post(reverse("training_cancel", args=[run.pk]), follow=True)
        self.assertContains(response, "stops at its next step")
        run.refresh_from_db()
        self.assertEqual(run.status, JobStatus.RUNNING)
        self.assertIsNotNone(run.cancel_requested_at)

    def test_other_editors_may_not_cancel(self):
        run = make_run(self.subject, self.project, self.owner, self.model)
        self.client.force_login(self.editor)
        self.assertEqual(self.client.post(reverse("training_cancel", args=[run.pk])).status_code,
                         403)
        run.refresh_from_db()
        self.assertEqual(run.status, JobStatus.QUEUED)


# -- On the worker, with the tiny model ---------------------------------------------------


@pytest.fixture(autouse=True)
def lora_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_LORA_CACHE_DIR", str(tmp_path / "lora-cache"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")


@pytest.fixture
def studio(tiny_model_dir):
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name="tiny-sd15", source=str(tiny_model_dir))
    subject = make_subject(team, user, images=3, size=(256, 256))
    return {"user": user, "team": team, "project": project, "model": model, "subject": subject}


def execute(run_id, **patches):
    events = []
    with mock.patch("generation.training.execution.publish",
                    side_effect=lambda group, payload: events.append(payload)):
        training_execute(run_id=run_id)
    return events


def generate(studio, loras=()):
    params = {
        "model": studio["model"], "prompt": "a photo of zxq dog", "negative_prompt": "",
        "steps": 4, "guidance_scale": 6.5, "width": 64, "height": 64, "seed": 1234,
        "loras": list(loras),
    }
    with mock.patch("generation.services.enqueue_generation"):
        job = job_create(user=studio["user"], project=studio["project"], params=params)
    with mock.patch("generation.execution.publish"), mock.patch("generation.services.publish"):
        job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, job.error
    return np.asarray(PILImage.open(io.BytesIO(Image.objects.get(job=job).file.read())))


def test_training_on_the_tiny_model_makes_a_lora_that_changes_the_image(studio):
    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=20, learning_rate=5e-3, rank=4, batch_size=2, sample_every=10)
    events = execute(run.pk)
    run.refresh_from_db()

    assert run.status == JobStatus.FINISHED, run.error
    # The loss on the subject's images (fixed noise and timesteps) went down.
    assert run.evaluation_loss_after < run.evaluation_loss_before
    assert len(run.losses) == 20 and run.losses[-1][0] == 20
    assert "Added “Rex” to T's LoRA library." in run.log
    # Live: every step's loss, a sample every 10 steps, then the end.
    kinds = [event["type"] for event in events]
    assert kinds.count("training.progress") == 20
    assert [e["sample_step"] for e in events if e["type"] == "training.sample"] == [10, 20]
    assert kinds[-1] == "training.finished"
    assert list(run.samples.values_list("step", flat=True)) == [10, 20]

    lora = run.lora
    assert (lora.team, lora.family, lora.rank, lora.resolution) == (
        studio["team"], "sd15", 4, "64x64"
    )
    assert lora.trigger_word_list() == ["zxq dog"]
    before = generate(studio)
    with_lora = generate(studio, [LoraChoice(lora, 1.0)])
    assert not np.array_equal(before, with_lora)


def test_sdxl_training_makes_an_sdxl_lora_that_changes_the_image(studio, tiny_sdxl_model_dir):
    xl = DiffusionModel.objects.create(name="tiny-sdxl", source=str(tiny_sdxl_model_dir),
                                       family="sdxl")
    run = make_run(studio["subject"], studio["project"], studio["user"], xl, steps=6,
                   learning_rate=5e-3, batch_size=2, prior_preservation=True, class_images=1)
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.FINISHED, run.error
    assert (run.lora.family, run.lora.base_model, run.lora.trigger_words) == (
        "sdxl", "tiny-sdxl", "zxq dog"
    )
    xl_studio = {**studio, "model": xl}
    assert not np.array_equal(generate(xl_studio), generate(xl_studio, [LoraChoice(run.lora, 1)]))


def test_a_run_claims_once_and_a_second_delivery_does_nothing(studio):
    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=2, sample_every=0)
    execute(run.pk)
    run.refresh_from_db()
    assert (run.status, run.attempts) == (JobStatus.FINISHED, 1)
    assert execute(run.pk) == []
    run.refresh_from_db()
    assert run.attempts == 1


def test_a_run_whose_worker_died_is_taken_over_once_its_lease_lapsed(studio):
    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=2, status=JobStatus.RUNNING, attempts=1, claims=1,
                   log="[10:00:00] step 1", lease_expires_at=timezone.now() + timedelta(seconds=60))
    sample = TrainingSample(run=run, step=2)
    sample.file.save("old.png", ContentFile(image_bytes(size=(64, 64))), save=False)
    sample.save()
    # Its lease is live: another worker holds it, and a message leaves it alone.
    assert execute(run.pk) == []
    TrainingRun.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with mock.patch("generation.sweeper.enqueue_training") as enqueue:
        assert sweep()["training_lapsed_queued"] == 1
    enqueue.assert_called_once_with(run.pk)
    execute(run.pk)
    run.refresh_from_db()
    assert (run.status, run.attempts, run.claims) == (JobStatus.FINISHED, 2, 2)
    assert run.log.startswith("[10:00:00] step 1\n") and "Attempt 2 on" in run.log
    assert list(run.samples.values_list("step", flat=True)) == [2]
    assert not TrainingSample.objects.filter(pk=sample.pk).exists()


@override_settings(STUDIO_JOB_MAX_ATTEMPTS=2)
def test_a_run_whose_workers_keep_dying_fails_saying_so(studio):
    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   status=JobStatus.RUNNING, attempts=2, claims=2,
                   lease_expires_at=timezone.now() - timedelta(seconds=1))
    with mock.patch("generation.sweeper.publish") as publish:
        assert sweep() == {"training_lapsed_failed": 1}
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED
    assert "stopped during each of 2 attempts" in run.error
    assert publish.call_args.args[1]["type"] == "training.failed"


def test_prior_preservation_and_the_text_encoder_train_too(studio):
    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=3, prior_preservation=True, class_images=2, train_text_encoder=True)
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.FINISHED, run.error
    assert "Generating 2 class images for “a photo of dog”." in run.log
    assert "text encoder too" in run.log


def test_cancel_during_training_stops_it_and_keeps_the_log(studio):
    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=50)

    def cancel_at_step_3(group, payload):
        if payload["type"] == "training.progress" and payload["step"] == 3:
            TrainingRun.objects.filter(pk=run.pk).update(cancel_requested_at="2026-01-01T00:00Z")

    with mock.patch("generation.training.execution.publish", side_effect=cancel_at_step_3):
        training_execute(run_id=run.pk)
    run.refresh_from_db()
    # The worker sees the request with the next step's update and stops before another.
    assert run.status == JobStatus.CANCELED
    assert run.progress_step == 4
    assert "Canceled at step 4 of 50." in run.log
    assert "Loss on the subject's images before training" in run.log
    assert run.lora is None


def test_a_failed_run_says_why_and_keeps_its_log(studio):
    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=3, learning_rate=1e-2)
    with mock.patch("gpu_workers.training._diffusion_loss",
                    return_value=__import__("torch").tensor(float("nan"), requires_grad=True)):
        events = execute(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED
    assert "learning rate 0.01 is too high" in run.error
    assert "Failed: The loss became nan at step 1" in run.log
    assert events[-1]["type"] == "training.failed"


def test_half_precision_trains_lora_weights_in_fp32(tiny_model_dir):
    """The GPU path (frozen weights in half precision under autocast, LoRA weights and
    their optimiser in fp32), run with bf16 on the CPU."""
    import torch
    from safetensors.torch import load_file

    from gpu_workers.config import WorkerConfig
    from gpu_workers.training import train_dreambooth_lora
    from gpu_workers.training_plan import TrainingImage, TrainingRequest

    images = tuple(
        TrainingImage(PILImage.new("RGB", (64, 64), (70 * n, 90, 160)), "a photo of zxq dog")
        for n in range(3)
    )
    result = train_dreambooth_lora(
        TrainingRequest(
            model_source=str(tiny_model_dir), images=images, instance_prompt="a photo of zxq dog",
            class_prompt="a photo of dog", resolution=64, steps=3, learning_rate=1e-3, rank=4,
            batch_size=2, seed=3, train_text_encoder=True, sample_steps=2,
        ),
        config=WorkerConfig(device="cpu", dtype=torch.bfloat16),
    )
    assert all(np.isfinite(result.losses))
    tensors = load_file(result.lora_path)
    assert {tensor.dtype for tensor in tensors.values()} == {torch.float32}
    assert any(name.startswith("text_encoder.") for name in tensors)
    shutil.rmtree(Path(result.lora_path).parent)


def test_the_web_side_of_training_never_imports_torch():
    code = (
        "import sys; import gpu_workers.training_plan; "
        "assert 'torch' not in sys.modules, 'training_plan imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.django_db(transaction=True)
def test_a_run_taken_over_while_it_finished_adds_no_lora_to_the_library(studio):
    from django.db.models import F

    from generation.loras.models import Lora
    from generation.tasks import run_training

    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=2, sample_every=0)
    saved = []
    storage = Lora._meta.get_field("file").storage
    real_save = storage.save

    def take_over_at_the_last_step(group, payload):
        # The sweeper took the run back meanwhile and another attempt claimed it.
        if payload["type"] == "training.progress" and payload["step"] == 2:
            TrainingRun.objects.filter(pk=run.pk).update(claims=F("claims") + 1)

    def save(name, content, **kwargs):
        saved.append(real_save(name, content, **kwargs))
        return saved[-1]

    with mock.patch("generation.training.execution.publish",
                    side_effect=take_over_at_the_last_step), \
            mock.patch.object(storage, "save", side_effect=save):
        run_training(run.pk)
    run.refresh_from_db()
    assert (run.status, run.lora) == (JobStatus.RUNNING, None)
    assert not Lora.objects.exists()
    loras_saved = [name for name in saved if name.startswith("loras/")]
    assert loras_saved and not any(storage.exists(name) for name in loras_saved)


@pytest.mark.django_db(transaction=True)
@override_settings(STUDIO_JOB_LEASE_S=0.4)
def test_a_model_load_longer_than_the_lease_keeps_the_run(studio):
    import time

    from gpu_workers import pipelines

    run = make_run(studio["subject"], studio["project"], studio["user"], studio["model"],
                   steps=2, sample_every=0)
    real_load = pipelines._load

    def slow_load(*args, **kwargs):
        # A cold model read from a slow disk: the sweeper runs meanwhile.
        time.sleep(1.2)
        with mock.patch("generation.sweeper.enqueue_training"):
            sweep()
        return real_load(*args, **kwargs)

    with mock.patch.object(pipelines, "_load", side_effect=slow_load):
        execute(run.pk)
    run.refresh_from_db()
    assert (run.status, run.claims) == (JobStatus.FINISHED, 1), run.error
