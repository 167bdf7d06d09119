"""Training runs: a DreamBooth-LoRA of a subject, trained on the `train` queue, its live
progress, samples and log; the LoRA it makes joins the team's library.

A run belongs to a project (whose members see it and whose socket carries its events);
its subject and resulting LoRA to the project's team. Imported by generation/models.py.
"""

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from generation.choices import JobStatus
from gpu_workers.training_plan import PRESET_LABELS, duration_label
from studio.permissions import can

PRESET_CHOICES = [*PRESET_LABELS.items(), ("custom", "Custom")]
LOSS_POINTS = 400  # the loss chart keeps this many points; older ones are thinned out


def training_sample_path(sample, filename):
    return f"training/{sample.run.project_id}/{uuid.uuid4().hex}.png"


class TrainingRun(models.Model):
    subject = models.ForeignKey(
        "generation.Subject", on_delete=models.CASCADE, related_name="training_runs"
    )
    project = models.ForeignKey(
        "accounts.Project", on_delete=models.CASCADE, related_name="training_runs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="training_runs"
    )
    model = models.ForeignKey(
        "generation.DiffusionModel", on_delete=models.PROTECT, related_name="training_runs"
    )
    preset = models.CharField(max_length=20, choices=PRESET_CHOICES, default="balanced")
    steps = models.PositiveIntegerField()
    learning_rate = models.FloatField()
    rank = models.PositiveSmallIntegerField()
    resolution = models.PositiveSmallIntegerField()
    batch_size = models.PositiveSmallIntegerField()
    seed = models.BigIntegerField()
    train_text_encoder = models.BooleanField(default=False)
    prior_preservation = models.BooleanField(default=False)
    fp8_base = models.BooleanField(default=False)  # FLUX.1 / SD 3.x: transformer stored in fp8
    class_images = models.PositiveSmallIntegerField(default=0)
    sample_prompt = models.CharField(max_length=500)
    sample_every = models.PositiveIntegerField(default=0)
    estimated_memory_bytes = models.BigIntegerField(default=0)
    estimated_seconds = models.FloatField(default=0)

    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    progress_step = models.PositiveIntegerField(default=0)
    # [[step, loss], ...], thinned to LOSS_POINTS for the chart.
    losses = models.JSONField(default=list, blank=True)
    evaluation_loss_before = models.FloatField(null=True, blank=True)
    evaluation_loss_after = models.FloatField(null=True, blank=True)
    log = models.TextField(blank=True)  # kept whatever the outcome
    # As a generation job's (generation.leases).
    attempts = models.PositiveIntegerField(default=0)
    claims = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    lora = models.OneToOneField(
        "generation.Lora",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="training_run",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Training run {self.pk} of {self.subject} ({self.status})"

    def get_absolute_url(self):
        return reverse("training_detail", args=[self.pk])

    def is_active(self):
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    def may_cancel(self, user):
        """Its author or an admin of its project, while it is queued or running."""
        return self.is_active() and (
            self.created_by_id == user.pk or can(user, "manage", self.project)
        )

    def progress_percent(self):
        if self.status == JobStatus.FINISHED:
            return 100
        return round(100 * self.progress_step / self.steps) if self.steps else 0

    def seconds_left(self):
        """From the pace so far; None before the first step or once ended."""
        if self.status != JobStatus.RUNNING or not self.progress_step or not self.started_at:
            return None
        elapsed = (timezone.now() - self.started_at).total_seconds()
        return elapsed / self.progress_step * (self.steps - self.progress_step)

    def eta_label(self):
        left = self.seconds_left()
        return "" if left is None else duration_label(left)

    def estimate_labels(self):
        return {
            "memory": f"{self.estimated_memory_bytes / 1024**3:.1f} GB",
            "duration": duration_label(self.estimated_seconds),
        }

    def event_payload(self, **extra):
        """What every training event carries; the page needs nothing else to redraw."""
        return {
            "run_id": self.pk,
            "project_id": self.project_id,
            "status": self.status,
            "step": self.progress_step,
            "total": self.steps,
            "eta": self.eta_label(),
            **extra,
        }

    def chart_points(self, width=600, height=160):
        """The loss chart as an SVG polyline's points ("x,y x,y …"), scaled to the box."""
        return loss_polyline(self.losses, self.steps, width, height)


def loss_polyline(losses, total_steps, width, height):
    if not losses:
        return ""
    values = [loss for _, loss in losses]
    low, high = min(values), max(values)
    spread = (high - low) or 1.0
    return " ".join(
        f"{width * step / max(total_steps, 1):.1f},{height - height * (loss - low) / spread:.1f}"
        for step, loss in losses
    )


def thin_losses(losses):
    """Every other point once past LOSS_POINTS, the latest always kept: the chart keeps
    its shape over thousands of steps with a bounded row."""
    if len(losses) <= LOSS_POINTS:
        return losses
    return losses[:-1][::2] + losses[-1:]


class TrainingSample(models.Model):
    """An image of the run's fixed sample prompt and seed, made every N steps."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="samples")
    step = models.PositiveIntegerField()
    file = models.FileField(upload_to=training_sample_path, max_length=300)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["step", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step"], name="one_sample_per_run_step")
        ]

    def __str__(self):
        return f"Sample at step {self.step} of run {self.run_id}"

    def get_absolute_url(self):
        return reverse("training_sample_file", args=[self.pk])
