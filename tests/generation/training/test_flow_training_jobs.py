"""Training on FLUX.1 and SD 3.x models: the form offers them with their own presets and an
estimate of their own, refuses their text encoders, and a run through the worker's
execution ends as a LoRA of the model's family in the team's library (tiny models, CPU)."""

import json
from unittest import mock

import pytest
import torch
from django.urls import reverse
from django.utils.html import escape
from safetensors import safe_open

from generation.models import DiffusionModel, JobStatus
from generation.training.execution import training_execute, training_request
from generation.training.models import TrainingRun
from gpu_workers.training_plan import FLOW_PRESETS, PRESET_NOTES, PRESETS, estimate
from studio.accounts.models import Membership, Project, Role, Team, User
from tests.base import StudioTestCase
from tests.subject_builders import make_run, make_subject

pytestmark = pytest.mark.django_db

FORM = {
    "preset": "custom", "steps": "1000", "learning_rate": "0.0001", "rank": "16",
    "resolution": "1024", "batch_size": "1", "seed": "7", "class_images": "50",
    "sample_every": "100", "sample_prompt": "",
}


def flow_estimate(family, **changes):
    values = {
        "family": family, "resolution": 1024, "steps": 1000, "batch_size": 1, "rank": 16,
        "train_text_encoder": False, "prior_preservation": False, "class_images": 0,
        "samples": 10,
    }
    return estimate(**{**values, **changes})


class FlowTrainingFormTests(StudioTestCase):
    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()
        cls.subject = make_subject(cls.team, cls.editor)
        cls.flux = DiffusionModel.objects.create(name="flux", source="/m/flux", family="flux1")
        cls.sd3 = DiffusionModel.objects.create(name="sd35", source="/m/sd35", family="sd3")

    def post(self, model, **changes):
        self.client.force_login(self.editor)
        data = {"project": self.project.pk, "model": model.pk, **FORM, **changes}
        with mock.patch("generation.training.services.enqueue_training") as enqueue:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(reverse("training_start", args=[self.subject.pk]),
                                            data)
        return response, enqueue

    def test_a_flux_run_is_queued_with_the_familys_estimate(self):
        response, enqueue = self.post(self.flux)
        run = TrainingRun.objects.get()
        self.assertRedirects(response, run.get_absolute_url())
        enqueue.assert_called_once_with(run.pk)
        self.assertEqual(run.model, self.flux)
        expected = flow_estimate("flux1")
        self.assertEqual(
            (run.estimated_memory_bytes, run.estimated_seconds),
            (expected.memory_bytes, expected.seconds),
        )

    def test_the_text_encoders_of_flow_models_are_refused_naming_the_family(self):
        for model, name in ((self.flux, "FLUX.1"), (self.sd3, "SD 3.x")):
            with self.subTest(family=model.family):
                response, enqueue = self.post(model, train_text_encoder="on")
                self.assertEqual(response.status_code, 422)
                errors = response.context["training_form"].errors["train_text_encoder"]
                self.assertIn(f"Training {name}'s text encoders is not supported", errors[0])
                enqueue.assert_not_called()
        self.assertFalse(TrainingRun.objects.exists())

    def test_the_estimate_knows_the_family(self):
        sd15, sdxl = flow_estimate("sd15"), flow_estimate("sdxl")
        flux, sd3 = flow_estimate("flux1"), flow_estimate("sd3")
        self.assertEqual(len({e.memory_bytes for e in (sd15, sdxl, sd3, flux)}), 4)
        # A step's time grows with the denoiser: SD 1.x < SDXL < SD 3.5 Large < FLUX.1 [dev].
        seconds = [e.seconds for e in (sd15, sdxl, sd3, flux)]
        self.assertEqual(seconds, sorted(seconds))
        self.assertGreater(flux.memory_bytes, sd3.memory_bytes)
        # FLUX.1's transformer alone is 24 GB in bf16: only its fp8 preset fits a 24 GB GPU,
        # the others an 80 GB one; SD 3.5 Large's Quick and Balanced fit 24 GB at 1024 px.
        for name, preset in FLOW_PRESETS["flux1"].items():
            fitted = flow_estimate("flux1", rank=preset["rank"], batch_size=preset["batch_size"],
                                   fp8_base=preset["fp8_base"])
            if name == "fp8_24gb":
                self.assertLess(fitted.memory_bytes, 24 * 1024**3, name)
            else:
                self.assertGreater(fitted.memory_bytes, 24 * 1024**3, name)
            self.assertLess(fitted.memory_bytes, 80 * 1024**3, name)
        # fp8 counts the transformer at 1 byte a parameter (11.9 G), plus one block cast up.
        self.assertAlmostEqual(
            flux.memory_bytes - flow_estimate("flux1", fp8_base=True).memory_bytes,
            23.8e9 / 2 - 0.68e9,
            delta=1,
        )
        for name in ("quick", "balanced"):
            preset = FLOW_PRESETS["sd3"][name]
            fitted = flow_estimate("sd3", rank=preset["rank"], batch_size=preset["batch_size"])
            self.assertLess(fitted.memory_bytes, 24 * 1024**3, name)
        # Prior preservation holds the whole pipeline while it makes the class images.
        self.assertGreater(
            flow_estimate("sd3", prior_preservation=True, class_images=50).memory_bytes,
            sd3.memory_bytes,
        )
        self.client.force_login(self.editor)
        response = self.client.post(
            reverse("training_estimate", args=[self.subject.pk]),
            {"project": self.project.pk, "model": self.flux.pk, **FORM, "sample_every": "0"},
            headers={"HX-Request": "true"},
        )
        self.assertContains(response, flow_estimate("flux1", samples=1).memory_label())

    def test_the_24_gb_preset_queues_a_flux_run_with_fp8_base_weights(self):
        preset = FLOW_PRESETS["flux1"]["fp8_24gb"]
        self.assertEqual(
            (preset["rank"], preset["batch_size"], preset["steps"], preset["fp8_base"]),
            (16, 1, 2000, True),
        )
        response, enqueue = self.post(self.flux, preset="fp8_24gb", steps="2000",
                                      fp8_base="on")
        run = TrainingRun.objects.get()
        self.assertRedirects(response, run.get_absolute_url())
        self.assertEqual((run.preset, run.fp8_base), ("fp8_24gb", True))
        self.assertEqual(training_request(run).fp8_base, True)
        expected = flow_estimate("flux1", steps=2000, fp8_base=True)
        self.assertEqual(run.estimated_memory_bytes, expected.memory_bytes)
        self.assertLess(run.estimated_memory_bytes, 24 * 1024**3)
        detail = self.client.get(run.get_absolute_url())
        self.assertContains(detail, "24 GB (fp8) · flux · 2000 steps")
        self.assertContains(detail, "· fp8 base weights ·")

    def test_fp8_base_weights_and_the_24_gb_preset_are_refused_for_other_families(self):
        response, enqueue = self.post(self.model, fp8_base="on", resolution="512")
        self.assertEqual(response.status_code, 422)
        self.assertIn(
            "FP8 base weights are for FLUX.1 and SD 3.x models",
            response.context["training_form"].errors["fp8_base"][0],
        )
        response, enqueue = self.post(self.sd3, preset="fp8_24gb")
        self.assertEqual(response.status_code, 422)
        self.assertIn(
            "The “24 GB (fp8)” preset is for FLUX.1 models",
            response.context["training_form"].errors["preset"][0],
        )
        enqueue.assert_not_called()
        self.assertFalse(TrainingRun.objects.exists())

    def test_the_form_offers_each_familys_presets(self):
        self.client.force_login(self.editor)
        response = self.client.get(self.subject.get_absolute_url())
        presets = json.loads(
            response.content.decode().split('id="training-presets" type="application/json">')[1]
            .split("</script>")[0]
        )
        self.assertEqual(presets["models"][str(self.flux.pk)], "flux1")
        self.assertEqual(presets["models"][str(self.sd3.pk)], "sd3")
        self.assertEqual(presets["models"][str(self.model.pk)], self.model.family)
        self.assertEqual(presets["families"]["flux1"]["balanced"]["rank"], 16)
        self.assertIs(presets["families"]["flux1"]["fp8_24gb"]["fp8_base"], True)
        self.assertIs(presets["families"]["flux1"]["balanced"]["fp8_base"], False)
        self.assertNotIn("fp8_24gb", presets["families"]["sd3"])
        self.assertEqual(presets["families"]["sd3"]["high_quality"]["batch_size"], 4)
        self.assertEqual(
            presets["families"][self.model.family]["quick"]["steps"], PRESETS["quick"]["steps"]
        )
        self.assertContains(response, escape(PRESET_NOTES["flux1"]))
        self.assertContains(response, escape(PRESET_NOTES["sd3"]))


# --- a run end to end, in this process ------------------------------------------------------


@pytest.fixture(scope="module", params=["flux1", "sd3"])
def flow_model_dir(request, tmp_path_factory):
    from gpu_workers.tiny_models import build_tiny_flux, build_tiny_sd3

    build = build_tiny_flux if request.param == "flux1" else build_tiny_sd3
    return request.param, build(tmp_path_factory.mktemp("models") / f"tiny-{request.param}")


def execute_run(family, source, **fields):
    """A 3-step run of a 3-image subject on the tiny `family` model at `source`, through the
    worker's execution; the run (refreshed) and the events it published."""
    user = User.objects.create_user("ann", "ann@example.org", "pw")
    team = Team.objects.create(name="T")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    project = Project.objects.create(team=team, name="P")
    model = DiffusionModel.objects.create(name=f"tiny-{family}", source=str(source),
                                          family=family)
    subject = make_subject(team, user, images=3, size=(256, 256))
    run = make_run(subject, project, user, model, steps=3, learning_rate=5e-3, batch_size=2,
                   sample_every=0, **fields)
    events = []
    with mock.patch("generation.training.execution.publish",
                    side_effect=lambda group, payload: events.append(payload)):
        training_execute(run_id=run.pk)
    run.refresh_from_db()
    return run, events


@pytest.mark.slow
def test_a_flow_run_ends_as_a_lora_of_its_family_in_the_library(flow_model_dir, monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    family, source = flow_model_dir
    run, events = execute_run(family, source)
    team = run.project.team

    assert run.status == JobStatus.FINISHED, run.error
    assert [event["type"] for event in events].count("training.progress") == 3
    assert events[-1]["type"] == "training.finished"
    assert run.evaluation_loss_before is not None and run.evaluation_loss_after is not None
    lora = run.lora
    assert (lora.team, lora.family, lora.rank, lora.base_model) == (
        team, family, 4, f"tiny-{family}"
    )
    with safe_open(lora.file.path, "pt") as tensors:
        names, metadata = list(tensors.keys()), tensors.metadata()
    assert all(name.startswith("transformer.") for name in names)
    # kohya sd-scripts' names: "flux1"; the tiny SD 3.x is 3.5 Large's architecture.
    assert metadata["ss_base_model_version"] == {"flux1": "flux1", "sd3": "5-large"}[family]


@pytest.mark.slow
@pytest.mark.parametrize("flow_model_dir", ["flux1"], indirect=True)
def test_a_flux_run_with_the_24_gb_preset_ends_as_a_lora_in_the_library(
    flow_model_dir, monkeypatch
):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    family, source = flow_model_dir
    preset = FLOW_PRESETS["flux1"]["fp8_24gb"]
    run, events = execute_run(family, source, preset="fp8_24gb", fp8_base=preset["fp8_base"])

    assert run.status == JobStatus.FINISHED, run.error
    assert "Stored the frozen transformer's layer weights in fp8" in run.log
    assert events[-1]["type"] == "training.finished"
    lora = run.lora
    assert (lora.team, lora.family, lora.rank) == (run.project.team, "flux1", 4)
    with safe_open(lora.file.path, "pt") as tensors:
        assert {tensors.get_tensor(name).dtype for name in tensors.keys()} == {torch.float32}
