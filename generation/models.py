from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from studio.accounts.models import Project


class ModelFamily(models.TextChoices):
    SD15 = "sd15", "Stable Diffusion 1.x"
    SD2 = "sd2", "Stable Diffusion 2.x"
    SDXL = "sdxl", "Stable Diffusion XL"


class DiffusionModelQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(is_enabled=True)


class DiffusionModel(models.Model):
    """A checkpoint in the model library: a Hub id or a local diffusers folder."""

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(
        max_length=500, help_text="Hugging Face Hub id or a local diffusers folder path."
    )
    family = models.CharField(max_length=10, choices=ModelFamily.choices, default=ModelFamily.SD15)
    default_width = models.PositiveIntegerField(default=512)
    default_height = models.PositiveIntegerField(default=512)
    default_steps = models.PositiveIntegerField(default=25)
    default_guidance_scale = models.FloatField(default=7.0)
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = DiffusionModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


class GenerationJobQuerySet(models.QuerySet):
    def queued(self):
        return self.filter(status=JobStatus.QUEUED)

    def active(self):
        return self.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])

    def ahead_of(self, job):
        """Queued jobs that will be picked before this one (first come, first served)."""
        return self.queued().filter(
            Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk)
        )


class GenerationJob(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    model = models.ForeignKey(DiffusionModel, on_delete=models.PROTECT, related_name="jobs")
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    steps = models.PositiveIntegerField()
    guidance_scale = models.FloatField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    progress_step = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    # Renewed at every step by the worker running the job; once it lapses, the worker is
    # presumed dead and a redelivered message may claim the job again.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = GenerationJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Job {self.pk} ({self.status})"

    def get_absolute_url(self):
        return reverse("job_detail", args=[self.pk])

    def is_active(self):
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    def queue_position(self):
        """1 for the next job to run; None once the job has left the queue."""
        if self.status != JobStatus.QUEUED:
            return None
        return GenerationJob.objects.ahead_of(self).count() + 1

    def progress_percent(self):
        if self.status == JobStatus.FINISHED:
            return 100
        return round(100 * self.progress_step / self.steps) if self.steps else 0

    def event_payload(self, **extra):
        """The fields every job event carries; the browser needs nothing else to redraw."""
        return {
            "job_id": self.pk,
            "project_id": self.project_id,
            "status": self.status,
            "step": self.progress_step,
            "total": self.steps,
            **extra,
        }
