"""Training-run workflows on the web side: the models a subject can be trained on, the
run's checks and estimate, starting it on the `train` queue and canceling it."""

import random

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from generation import admission
from generation.dispatch import enqueue_training
from generation.models import DiffusionModel, JobStatus, ModelFamily
from generation.training.models import TrainingRun
from gpu_workers import training_plan
from studio.permissions import can
from studio.realtime.event_types import EventType
from studio.realtime.events import publish

# What DreamBooth-LoRA training runs on (gpu_workers.training; FLUX.1 and SD 3.x in
# gpu_workers.flow_training).
TRAINABLE_FAMILIES = (
    ModelFamily.SD15, ModelFamily.SD2, ModelFamily.SDXL, ModelFamily.FLUX1, ModelFamily.SD3
)
DEFAULT_CLASS_IMAGES = 50  # per kohya's and diffusers' guides: 100-200 per 1000 steps


def trainable_models(user, project):
    """Checkpoints `user` may generate with in `project` that training runs on."""
    return DiffusionModel.objects.available_to(user, project).filter(
        family__in=TRAINABLE_FAMILIES
    )


def preset_choices(models):
    """What the training form's script fills a preset in from, for `models` (the form's
    base models): each family's presets' values, each model's family, and the families
    whose runs may store the base in fp8 (the option is shown for those only)."""
    families = {model.pk: model.family for model in models}
    return {
        "families": {
            family: {
                name: {field: preset[field] for field in training_plan.PRESET_FIELDS}
                for name, preset in training_plan.presets_for(family).items()
            }
            for family in set(families.values())
        },
        "models": families,
        "fp8_families": sorted(training_plan.FP8_BASE_FAMILIES),
    }


def preset_notes(models):
    """What the presets of `models`' families fit, for the families that have a note."""
    families = {model.family for model in models}
    return [note for family, note in training_plan.PRESET_NOTES.items() if family in families]


def training_estimate(model, params):
    return training_plan.estimate(
        family=model.family,
        resolution=params["resolution"],
        steps=params["steps"],
        batch_size=params["batch_size"],
        rank=params["rank"],
        train_text_encoder=params["train_text_encoder"],
        prior_preservation=params["prior_preservation"],
        class_images=params["class_images"] if params["prior_preservation"] else 0,
        fp8_base=params["fp8_base"],
        samples=training_plan.sample_count(params["steps"], params["sample_every"]),
    )


def training_run_create(*, subject, project, user, params):
    """Queue a DreamBooth-LoRA run of `subject` in `project` with `params` (the training
    form's cleaned data); a ValidationError says what stops it and creates nothing."""
    if project.team_id != subject.team_id:
        raise PermissionDenied("The project is not in the subject's team.")
    if not (can(user, "manage_subjects", subject.team) and can(user, "generate", project)):
        raise PermissionDenied("Only the team's editors may train on its subjects.")
    refusal = subject.training_refusal()
    if refusal:
        raise ValidationError(refusal, code="subject")
    model = params["model"]
    if not trainable_models(user, project).filter(pk=model.pk).exists():
        raise ValidationError(
            f"{model.name} can't be trained on here: choose a Stable Diffusion (1.x, 2.x, XL or "
            f"3.x) or FLUX.1 model you may use in {project.name}.",
            code="model",
        )
    estimate = training_estimate(model, params)
    # Before the transaction: a refusal is counted even when the caller rolls back.
    admission.run(admission.training_cost_checks, user=user, project=project,
                  estimate=estimate)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            subject=subject,
            project=project,
            created_by=user,
            model=model,
            preset=params["preset"],
            steps=params["steps"],
            learning_rate=params["learning_rate"],
            rank=params["rank"],
            resolution=params["resolution"],
            batch_size=params["batch_size"],
            seed=params["seed"] if params.get("seed") is not None else random.randrange(2**32),
            train_text_encoder=params["train_text_encoder"],
            prior_preservation=params["prior_preservation"],
            fp8_base=params["fp8_base"],
            class_images=params["class_images"] if params["prior_preservation"] else 0,
            sample_prompt=params["sample_prompt"] or subject.instance_prompt(),
            sample_every=params["sample_every"],
            estimated_memory_bytes=estimate.memory_bytes,
            estimated_seconds=estimate.seconds,
        )
        transaction.on_commit(lambda: enqueue_training(run.pk))
        transaction.on_commit(
            lambda: publish(
                project.events_group(), run.event_payload(type=EventType.TRAINING_QUEUED)
            )
        )
    return run


def training_run_cancel(*, run, user):
    """A queued run ends at once; a running one stops at its next step. Its log stays."""
    if not run.may_cancel(user):
        raise PermissionDenied("Only its author or a project admin may cancel this run.")
    now = timezone.now()
    ended = TrainingRun.objects.filter(pk=run.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELED, cancel_requested_at=now, finished_at=now,
        error="Canceled before it started.",
    )
    if not ended:
        # A run whose worker died (lease lapsed) ends now: nobody would read the flag.
        ended = TrainingRun.objects.filter(
            pk=run.pk, status=JobStatus.RUNNING, lease_expires_at__lt=now
        ).update(
            status=JobStatus.CANCELED, cancel_requested_at=now, finished_at=now,
            error="Canceled; its worker had stopped.",
        )
    if not ended:
        TrainingRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING).update(
            cancel_requested_at=now
        )
    run.refresh_from_db()
    if ended:
        publish(run.project.events_group(), run.event_payload(type=EventType.TRAINING_CANCELED))
    return run
