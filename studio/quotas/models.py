"""Per-user limits, per-team GPU budgets, what every job and training run cost, what the
workers measured, and every refusal."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Sum
from django.utils import timezone

USER = settings.AUTH_USER_MODEL


class BudgetPeriod(models.TextChoices):
    DAY = "day", "daily"
    MONTH = "month", "monthly"


def period_bounds(period, now=None):
    """(start, end) of the budget period holding `now`, in the site's time zone: a day
    from midnight, a month from midnight on its first day."""
    now = timezone.localtime(now or timezone.now())
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return start, start + timedelta(days=1)
    start = start.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


class TeamBudget(models.Model):
    """GPU-seconds a team may spend per month and per day, set by site staff. Blank: no
    limit for that period. No row: the team has no budget."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="budget")
    monthly_gpu_seconds = models.PositiveIntegerField(
        "GPU-seconds per month", null=True, blank=True,
        help_text="Blank: no monthly limit. Resets at midnight on the 1st.",
    )
    daily_gpu_seconds = models.PositiveIntegerField(
        "GPU-seconds per day", null=True, blank=True,
        help_text="Blank: no daily limit. Resets at midnight.",
    )
    updated_by = models.ForeignKey(
        USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Budget of {self.team}"

    def limit_for(self, period):
        if period == BudgetPeriod.DAY:
            return self.daily_gpu_seconds
        return self.monthly_gpu_seconds


class TeamLimits(models.Model):
    """A team's own per-user limits, set by its admins; each at most the site's (a team
    may only be stricter). Blank: the site's."""

    team = models.OneToOneField(
        "accounts.Team", on_delete=models.CASCADE, related_name="user_limits"
    )
    max_active_images = models.PositiveIntegerField(
        "queued and running images per user", null=True, blank=True
    )
    images_per_hour = models.PositiveIntegerField("images per user per hour", null=True, blank=True)
    max_training_runs = models.PositiveIntegerField(
        "training runs at once per user", null=True, blank=True
    )
    updated_by = models.ForeignKey(
        USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Limits of {self.team}"


# (TeamLimits field, site setting) for each per-user limit.
USER_LIMITS = {
    "max_active_images": "STUDIO_USER_MAX_ACTIVE_IMAGES",
    "images_per_hour": "STUDIO_USER_IMAGES_PER_HOUR",
    "max_training_runs": "STUDIO_USER_MAX_TRAINING_RUNS",
}


_LOOK_UP = object()


def effective_limits(team, own=_LOOK_UP):
    """{limit: value} for `team`'s members: the team's own where it set one, never above
    the site's (which may have been lowered since), else the site's. `own`: the team's
    TeamLimits or None, if the caller has already fetched it."""
    if own is _LOOK_UP:
        own = TeamLimits.objects.filter(team=team).first()
    limits = {}
    for name, setting in USER_LIMITS.items():
        site = getattr(settings, setting)
        value = getattr(own, name) if own else None
        limits[name] = site if value is None else min(value, site)
    return limits


class UsageKind(models.TextChoices):
    GENERATION = "generation", "Generation"
    TRAINING = "training", "Training"


class UsageRecordQuerySet(models.QuerySet):
    def gpu_seconds(self):
        return self.aggregate(total=Sum("gpu_seconds"))["total"] or 0.0

    def in_period(self, period, now=None):
        start, end = period_bounds(period, now)
        return self.filter(at__gte=start, at__lt=end)


class UsageRecord(models.Model):
    """What one generation job or training run cost the team: the GPU-seconds its worker
    spent (a batch's time shared among its rows) beside what was estimated."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="usage")
    user = models.ForeignKey(
        USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="gpu_usage"
    )
    kind = models.CharField(max_length=10, choices=UsageKind.choices)
    job = models.OneToOneField(
        "generation.GenerationJob", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="usage",
    )
    training_run = models.OneToOneField(
        "generation.TrainingRun", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="usage",
    )
    # The model's name, kept should the model leave the library.
    model_name = models.CharField(max_length=100)
    images = models.PositiveIntegerField(default=0)
    gpu_seconds = models.FloatField()
    estimated_gpu_seconds = models.FloatField()
    at = models.DateTimeField(default=timezone.now)

    objects = UsageRecordQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["team", "at"], name="usage_team_at")]

    def __str__(self):
        return f"{self.gpu_seconds:.1f} GPU-s for {self.team}"


class WorkerReport(models.Model):
    """What a worker last said about its GPU: its name and memory, and the seconds one
    denoising step of one megapixel took it, per model family (a moving average)."""

    worker = models.CharField(max_length=200, unique=True)
    device = models.CharField(max_length=200, blank=True)
    gpu_memory_bytes = models.BigIntegerField(null=True, blank=True)
    step_seconds = models.JSONField(default=dict, blank=True)  # {family: s per step per MP}
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self):
        return self.worker


class RefusalReason(models.TextChoices):
    ACTIVE_IMAGES = "active_images", "Queued and running images"
    IMAGES_PER_HOUR = "images_per_hour", "Images per hour"
    TRAINING_RUNS = "training_runs", "Training runs at once"
    DAILY_BUDGET = "daily_budget", "Daily GPU budget"
    MONTHLY_BUDGET = "monthly_budget", "Monthly GPU budget"
    GPU_MEMORY = "gpu_memory", "GPU memory"


class QuotaRefusal(models.Model):
    """One request refused by a limit or budget; nothing else was created."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=20, choices=RefusalReason.choices)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self):
        return f"{self.get_reason_display()} refused {self.user}"


class BudgetAlert(models.Model):
    """The team's admins were told its budget for this period is 80% spent: once a period."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    period = models.CharField(max_length=5, choices=BudgetPeriod.choices)
    period_start = models.DateTimeField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "period", "period_start"], name="one_budget_alert_per_period"
            )
        ]

    def __str__(self):
        return f"{self.team} {self.get_period_display()} budget alert"
