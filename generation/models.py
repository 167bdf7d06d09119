import hashlib

from django.conf import settings
from django.core.cache import cache
from django.db import models
from django.urls import reverse
from django.utils import timezone

# The domain packages' models (noqa: F401) are imported for Django, which registers an app's
# models from its models module.
from generation.choices import (
    GENERATION_FAMILIES,
    FluxTransformer,
    JobMode,
    JobPriority,
    JobStatus,
    ModelFamily,
    ModelKind,
    SourceKind,
)
from generation.loras.embeddings.models import Embedding  # noqa: F401
from generation.loras.models import JobLora, Lora  # noqa: F401
from generation.recipe import Recipe
from generation.seeds import SeedField
from generation.styles.models import Style  # noqa: F401
from generation.training.models import TrainingRun, TrainingSample  # noqa: F401
from generation.training.subjects.models import Subject, SubjectConsent, SubjectImage  # noqa: F401
from generation.wildcards.models import Wildcard  # noqa: F401
from gpu_workers.requests import img2img_steps
from gpu_workers.samplers import SAMPLERS
from studio.accounts.models import ROLE_RANK, Project, Role
from studio.permissions import can

SAMPLER_CHOICES = [(name, name) for name in SAMPLERS]


# A kept preview outlives its job's last step by this much, then goes.
PREVIEW_KEPT_S = 600

_LOOK_UP = object()  # refusal_reason's "not given": None means the team has no setting


def guess_source_kind(source):
    """What a source string most likely is: a local file, a local folder or a Hub id."""
    source = source.strip()
    if source.lower().endswith((".safetensors", ".ckpt", ".pt", ".pth", ".bin")):
        return SourceKind.FILE
    if source.startswith(("/", "~", ".", "\\")) or source.count("/") != 1 or ":" in source:
        return SourceKind.FOLDER
    return SourceKind.HUB


def roles_at_least(role):
    """The roles ranked at or above `role`."""
    return [name for name, rank in ROLE_RANK.items() if rank >= ROLE_RANK[role]]


def roles_up_to(role):
    """The roles ranked at or below `role`: the minimum roles a `role` member satisfies."""
    return [name for name, rank in ROLE_RANK.items() if rank <= ROLE_RANK[role]]


class DiffusionModelQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(is_enabled=True)

    def default(self):
        """The model a new form starts with: the first by name, one that makes images from
        text alone before a FLUX.1 Fill model (which only inpaints and outpaints) or a FLUX.1
        Depth or Canny one (which needs a control image)."""
        return self.order_by("flux_transformer", "name").first()  # STANDARD is "": first

    def search(self, text="", family="", kind=""):
        """The library list's search (name or source contains `text`) and filters."""
        found = self
        if text:
            found = found.filter(models.Q(name__icontains=text) | models.Q(source__icontains=text))
        if family:
            found = found.filter(family=family)
        if kind:
            found = found.filter(kind=kind)
        return found

    def available_to(self, user, project, kind=ModelKind.CHECKPOINT):
        """Models of `kind` (checkpoints: those `user` may generate with) in `project`, in
        one query: enabled in the library and for the project's team, of a family the
        workers run, and the user's role at least the model's minimum (the team's
        setting, else the library's)."""
        team = project.team
        role = team.role_of(user)
        if role is None or ROLE_RANK[role] < ROLE_RANK[Role.EDITOR]:
            return self.none()
        allowed = roles_up_to(role)
        settings_rows = TeamModelSetting.objects.filter(team=team)
        return (
            self.usable()
            .filter(kind=kind, family__in=GENERATION_FAMILIES)
            .exclude(pk__in=settings_rows.filter(is_enabled=False).values("model"))
            # The team's minimum role, where it set one, replaces the library's.
            .exclude(
                pk__in=settings_rows.exclude(min_role="")
                .exclude(min_role__in=allowed)
                .values("model")
            )
            .filter(
                models.Q(min_role__in=allowed)
                | models.Q(pk__in=settings_rows.filter(min_role__in=allowed).values("model"))
            )
        )


class DiffusionModel(models.Model):
    """An entry in the model library: a checkpoint (what the studio generates with), a
    ControlNet or an IP-Adapter, from a Hub id, a local diffusers folder or a single local
    `.safetensors` file. Site-wide; each team can switch it off or raise its minimum role."""

    name = models.CharField(
        max_length=100,
        unique=True,
        error_messages={"unique": "A model with this name is already in the library."},
    )
    kind = models.CharField(
        max_length=12, choices=ModelKind.choices, default=ModelKind.CHECKPOINT, db_index=True
    )
    source_kind = models.CharField(
        "source type", max_length=10, choices=SourceKind.choices, default=SourceKind.HUB
    )
    source = models.CharField(
        max_length=500,
        help_text="A Hugging Face Hub id (owner/name), a diffusers folder or a .safetensors "
        "file, as the workers see it.",
    )
    # Single-file checkpoints: the component configs (a diffusers folder or Hub id of the
    # same architecture); blank: the standard ones for the checkpoint's architecture.
    config_source = models.CharField("diffusers config", max_length=500, blank=True)
    description = models.CharField(max_length=300, blank=True)
    family = models.CharField(max_length=10, choices=ModelFamily.choices, default=ModelFamily.SD15)
    default_width = models.PositiveIntegerField(default=512)
    default_height = models.PositiveIntegerField(default=512)
    default_steps = models.PositiveIntegerField(default=25)
    default_guidance_scale = models.FloatField(default=7.0)
    # An A1111 sampler name (gpu_workers.samplers); blank: the scheduler the model ships with.
    default_sampler = models.CharField(max_length=40, blank=True, choices=SAMPLER_CHOICES)
    # The least team role that may generate with it; each team may set its own.
    min_role = models.CharField(
        "minimum role", max_length=10, choices=Role.choices, default=Role.EDITOR
    )
    is_enabled = models.BooleanField("enabled", default=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Of a single-file source, computed on the CPU queue (generation.library.hashes); blank
    # until then, and for folders and Hub ids, which A1111 has no hash for.
    sha256 = models.CharField("SHA-256", max_length=64, blank=True, editable=False)
    # A FLUX.1 Fill model (a 384-channel transformer) inpaints and outpaints only; a FLUX.1
    # Depth or Canny [dev] one (128 channels) makes images from text and a control image
    # only. Read from the source's files when it is saved (sources.flux_transformer).
    flux_transformer = models.CharField(
        "FLUX.1 transformer", max_length=10, choices=FluxTransformer.choices, blank=True,
        default=FluxTransformer.STANDARD, editable=False,
    )

    objects = DiffusionModelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("model_edit", args=[self.pk])

    def a1111_hash(self):
        """A1111's "Model hash" (its `shorthash`): the SHA-256's first 10 hex digits."""
        return self.sha256[:10] or None

    @property
    def is_flux_fill(self):
        return self.flux_transformer == FluxTransformer.FILL

    @property
    def is_flux_control(self):
        return self.flux_transformer == FluxTransformer.CONTROL

    def modes(self):
        """The JobMode values it generates in: a Fill model redraws part of a source only, a
        Depth or Canny model makes images from text (and a control image) only."""
        if self.is_flux_fill:
            return [JobMode.INPAINT, JobMode.OUTPAINT]
        if self.is_flux_control:
            return [JobMode.TXT2IMG]
        return list(JobMode)

    def generates_in_studio(self):
        return self.kind == ModelKind.CHECKPOINT and self.family in GENERATION_FAMILIES

    def refusal_reason(self, user, team, setting=_LOOK_UP, kind=ModelKind.CHECKPOINT):
        """Why `user` may not use this model as a `kind` (checkpoints: generate with it) in
        `team`'s projects, or None if they may. Agrees with
        DiffusionModelQuerySet.available_to. `setting`: the team's TeamModelSetting for
        this model or None, if the caller has already fetched it.
        """
        if not self.is_enabled:
            return "it is switched off in the model library."
        if self.kind != kind:
            wanted = {ModelKind.CHECKPOINT: "a checkpoint", ModelKind.CONTROLNET: "a ControlNet"}
            return (
                f"it is a {self.get_kind_display()} model, not "
                f"{wanted.get(kind, 'an IP-Adapter')}."
            )
        if self.family not in GENERATION_FAMILIES:
            return f"{self.get_family_display()} models can't generate in the studio yet."
        if setting is _LOOK_UP:
            setting = TeamModelSetting.objects.filter(team=team, model=self).first()
        if setting is not None and not setting.is_enabled:
            return f"the team {team.name} has switched it off."
        role = team.role_of(user)
        needed = (setting.min_role if setting is not None else "") or self.min_role
        if role is None or ROLE_RANK[role] < max(ROLE_RANK[needed], ROLE_RANK[Role.EDITOR]):
            have = Role(role).label if role else "not a member"
            return f"it needs the {Role(needed).label} role in {team.name} (you are {have})."
        return None


class TeamModelSetting(models.Model):
    """A team's own setting for a library model: switched off for the team, or a minimum
    role of its own (blank: the library's). No row: the library's defaults."""

    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="model_settings"
    )
    model = models.ForeignKey(
        DiffusionModel, on_delete=models.CASCADE, related_name="team_settings"
    )
    is_enabled = models.BooleanField("enabled for this team", default=True)
    min_role = models.CharField(
        "minimum role", max_length=10, choices=Role.choices, blank=True
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "model"], name="one_model_setting_per_team")
        ]

    def __str__(self):
        return f"{self.model} in {self.team}"

    def effective_min_role(self):
        return self.min_role or self.model.min_role


class GenerationJobQuerySet(models.QuerySet):
    def queued(self):
        return self.filter(status=JobStatus.QUEUED)

    def active(self):
        return self.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])

    def positions(self):
        """{job id: place in line} for every queued job; 1 runs next."""
        from generation.queue import service_order

        return {pk: n for n, pk in enumerate(service_order(), start=1)}


class GenerationJob(models.Model):
    # Not a column: the place in line generation.services.jobs_dispatch announced this
    # instance with, set on the instances it dispatched (the API answers with it).
    announced_position: int | None

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    model = models.ForeignKey(DiffusionModel, on_delete=models.PROTECT, related_name="jobs")
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    # The prompts as typed when their variants and wildcards were expanded into the two above.
    prompt_template = models.TextField(blank=True)
    negative_prompt_template = models.TextField(blank=True)
    # The names of the team's styles applied to the prompts above, in order.
    styles = models.JSONField(default=list, blank=True)
    steps = models.PositiveIntegerField()
    guidance_scale = models.FloatField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    seed = SeedField()
    # Blank: the model's default sampler.
    sampler = models.CharField(max_length=40, blank=True, choices=SAMPLER_CHOICES)
    # FLUX.1 / SD 3.x: the flow-matching shift; null: the model's default.
    shift = models.FloatField(null=True, blank=True)
    clip_skip = models.PositiveSmallIntegerField(default=1)  # A1111's: 1 = the last layer
    # Images made together, with seeds seed, seed + 1, ... (A1111's "Batch size").
    batch_size = models.PositiveSmallIntegerField(default=1)
    # Variations (A1111's "Variation seed"): the seed's noise moved towards this seed's.
    variation_seed = SeedField(null=True, blank=True)
    variation_strength = models.FloatField(default=0.0)
    # img2img: the source is a gallery image or an upload (rebuilt from its pixels, stored
    # under a server-chosen name), redrawn at `strength` (A1111's "Denoising strength").
    source_image = models.ForeignKey(
        "gallery.Image",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="derived_jobs",
    )
    source_upload = models.FileField(max_length=300, blank=True)
    strength = models.FloatField(default=0.75)
    mode = models.CharField(max_length=10, choices=JobMode.choices, default=JobMode.TXT2IMG)
    # Inpaint: the mask painted over the source (white: redraw), stored like an upload.
    mask_upload = models.FileField(max_length=300, blank=True)
    # Outpaint: pixels added on each side of the source; the job's width and height are the
    # final canvas, the source fills the rest.
    outpaint_left = models.PositiveIntegerField(default=0)
    outpaint_right = models.PositiveIntegerField(default=0)
    outpaint_top = models.PositiveIntegerField(default=0)
    outpaint_bottom = models.PositiveIntegerField(default=0)
    # Hires fix (A1111's): the first image upscaled by `hires_scale`, then redrawn by img2img
    # at that size with its own steps (0: as many as the first pass) and strength.
    hires_scale = models.FloatField(default=1.0)
    hires_steps = models.PositiveIntegerField(default=0)
    hires_strength = models.FloatField(default=0.5)
    # ControlNet (canny): a library ControlNet conditioned on the edges of an image (a
    # gallery image or an upload), with the canny thresholds and the conditioning scale
    # (A1111's "Weight"). No control model: no ControlNet.
    control_model = models.ForeignKey(
        DiffusionModel,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="control_jobs",
        limit_choices_to={"kind": ModelKind.CONTROLNET},
    )
    control_image = models.ForeignKey(
        "gallery.Image",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="control_jobs",
    )
    control_upload = models.FileField(max_length=300, blank=True)
    control_low_threshold = models.PositiveSmallIntegerField(default=100)
    control_high_threshold = models.PositiveSmallIntegerField(default=200)
    control_scale = models.FloatField(default=1.0)
    # IP-Adapter: a library IP-Adapter and its image prompt (a gallery image or an upload),
    # at a scale (A1111's "Weight"). No adapter: no image prompt.
    ip_adapter_model = models.ForeignKey(
        DiffusionModel,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ip_adapter_jobs",
        limit_choices_to={"kind": ModelKind.IP_ADAPTER},
    )
    ip_adapter_image = models.ForeignKey(
        "gallery.Image",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="ip_adapter_jobs",
    )
    # Opened from "Remix" on this gallery image (any the user could see then): lineage.
    remix_of = models.ForeignKey(
        "gallery.Image",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="remix_jobs",
    )
    ip_adapter_upload = models.FileField(max_length=300, blank=True)
    ip_adapter_scale = models.FloatField(default=0.6)
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    # Higher runs first; team admins raise it. Within a priority, users take turns.
    priority = models.SmallIntegerField(choices=JobPriority.choices, default=JobPriority.NORMAL)
    # Set when the owner cancels a running job; the worker stops at its next step.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    progress_step = models.PositiveIntegerField(default=0)
    # Attempts that did work (reached a step), and times a worker claimed the job
    # (generation.leases).
    attempts = models.PositiveIntegerField(default=0)
    claims = models.PositiveIntegerField(default=0)
    # Renewed at every step by the worker running the job; once it lapses, the worker is
    # presumed dead and the sweeper queues the job again.
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

    def has_hires_fix(self):
        return self.hires_scale > 1

    def hires_size(self):
        """The final size: the first pass scaled, rounded down to multiples of 8."""
        return tuple(int(side * self.hires_scale) // 8 * 8 for side in (self.width, self.height))

    def first_pass_steps(self):
        if self.mode == JobMode.TXT2IMG:
            return self.steps
        return img2img_steps(self.steps, self.strength)

    def source_box(self):
        """Where the source sits on the canvas: (left, top, right, bottom)."""
        return (
            self.outpaint_left,
            self.outpaint_top,
            self.width - self.outpaint_right,
            self.height - self.outpaint_bottom,
        )

    def hires_pass_steps(self):
        return img2img_steps(self.hires_steps or self.steps, self.hires_strength)

    def total_steps(self):
        """Denoising steps the worker reports, every pass included."""
        hires = self.hires_pass_steps() if self.has_hires_fix() else 0
        return self.first_pass_steps() + hires

    def is_active(self):
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    def queue_position(self):
        """1 for the next job to run; None once the job has left the queue."""
        if self.status != JobStatus.QUEUED:
            return None
        return GenerationJob.objects.positions().get(self.pk)

    def may_cancel(self, user):
        """Its author or an admin of its project."""
        return self.created_by_id == user.pk or can(user, "manage", self)

    def may_retry(self, user):
        return self.status in (JobStatus.FAILED, JobStatus.CANCELED) and can(
            user, "generate", self
        )

    def recipe(self):
        return Recipe.from_job(self)

    def parameters(self):
        """What the generation form needs to make this job again."""
        return self.recipe().form_initial()

    @staticmethod
    def _preview_key(job_id):
        return f"job-preview:{job_id}"

    @classmethod
    def previews_keep(cls, previews):
        """Keep running jobs' latest previews ({job id: JPEG data URL}), in one cache write,
        for those who poll for them rather than listen to the project's events (A1111's
        /sdapi/v1/progress)."""
        if previews:
            cache.set_many(
                {cls._preview_key(job_id): url for job_id, url in previews.items()},
                PREVIEW_KEPT_S,
            )

    def latest_preview(self):
        """The running job's latest preview (a JPEG data URL), or None."""
        return cache.get(self._preview_key(self.pk))

    def progress_percent(self):
        if self.status == JobStatus.FINISHED:
            return 100
        total = self.total_steps()
        return round(100 * self.progress_step / total) if total else 0

    def run_seconds(self):
        """Seconds from its start to its end; None for a job that has not run to an end."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def steps_per_second(self):
        """A1111's it/s: denoising steps (every pass) per second of its whole run."""
        seconds = self.run_seconds()
        return self.total_steps() / seconds if seconds else None

    def event_payload(self, **extra):
        """The fields every job event carries; the browser needs nothing else to redraw."""
        return {
            "job_id": self.pk,
            "project_id": self.project_id,
            "status": self.status,
            "step": self.progress_step,
            "total": self.total_steps(),
            **extra,
        }


def prompt_key(prompt):
    """A fixed-size key for a prompt's text: prompts are too long for a unique index."""
    return hashlib.sha256(prompt.encode()).hexdigest()


class PromptFavourite(models.Model):
    """A prompt a user starred in their prompt history; one per user and prompt text."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prompt_favourites"
    )
    prompt = models.TextField()
    prompt_hash = models.CharField(max_length=64, editable=False)
    negative_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "prompt_hash"], name="one_favourite_per_user_and_prompt"
            )
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.user}: {self.prompt[:40]}"

    def save(self, *args, **kwargs):
        self.prompt_hash = prompt_key(self.prompt)
        super().save(*args, **kwargs)
