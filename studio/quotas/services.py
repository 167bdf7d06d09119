"""Limits and budgets checked before a job or training run is created, and what a team
spent. Web-side: no torch here (the workers' charging is in studio.quotas.charging)."""

from datetime import timedelta

from django.db.models import Count, Max, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from generation.admission import Refused
from generation.models import GenerationJob, JobStatus, TrainingRun
from studio.accounts.models import Team
from studio.quotas.costs import job_estimate, job_work, step_seconds
from studio.quotas.models import (
    BudgetPeriod,
    QuotaRefusal,
    RefusalReason,
    TeamBudget,
    UsageRecord,
    WorkerReport,
    effective_limits,
    period_bounds,
)

_LOOK_UP = object()
ALERT_SHARE = 0.8  # the team's admins are told once a period's budget is this much spent
BUDGET_REASONS = {
    BudgetPeriod.DAY: RefusalReason.DAILY_BUDGET,
    BudgetPeriod.MONTH: RefusalReason.MONTHLY_BUDGET,
}


class QuotaRefused(Refused):
    """A limit or budget refuses the request; nothing was created. `status_code`: what an
    API answers (429 for a limit that frees up by waiting, 403 for the rest)."""

    def __init__(self, message, *, reason, status_code):
        super().__init__(message)
        self.reason = reason
        self.status_code = status_code


def quota_refuse(*, user, team, reason, message, status_code=429):
    """Count the refusal and raise it. Callers check before their own transaction, so the
    count stays when they roll back."""
    QuotaRefusal.objects.create(team=team, user=user, reason=reason)
    raise QuotaRefused(message, reason=reason, status_code=status_code)


def local_time(moment):
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def quota_state(*, team, user):
    """(TeamLimits or None, TeamBudget or None, {active, last_hour, first}) of `team` and
    `user`: the team's limits and budget, the images `user` has queued or running, those
    asked for in the last hour and when the first of these was; one query."""
    recent = timezone.now() - timedelta(hours=1)
    mine = GenerationJob.objects.filter(created_by=user).order_by()

    def images(condition):
        return Subquery(
            mine.filter(condition).values("created_by")
            .annotate(images=Sum("batch_size")).values("images")
        )

    found = (
        Team.objects.select_related("user_limits", "budget")
        .annotate(
            active_images=images(Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])),
            recent_images=images(Q(created_at__gt=recent)),
            first_recent=Subquery(
                mine.filter(created_at__gt=recent).order_by("created_at").values("created_at")[:1]
            ),
        )
        .get(pk=team.pk)
    )
    counts = {"active": found.active_images, "last_hour": found.recent_images,
              "first": found.first_recent}
    # A missing reverse one-to-one row raises an AttributeError: getattr's default.
    return getattr(found, "user_limits", None), getattr(found, "budget", None), counts


def generation_quota_check(*, user, project, job, copies=1):
    """Refuse `copies` jobs like `job` (unsaved) that would take `user` past a per-user
    limit of the project's team, or the team past its GPU budget."""
    team = project.team
    own_limits, budget, counts = quota_state(team=team, user=user)
    limits = effective_limits(team, own=own_limits)
    images = job.batch_size * copies
    active = counts["active"] or 0
    limit = limits["max_active_images"]
    if active + images > limit:
        quota_refuse(
            user=user, team=team, reason=RefusalReason.ACTIVE_IMAGES,
            message=f"You have {active} images queued or running and this asks for {images} "
            f"more; {team.name} allows {limit} at once per user. Wait for some to finish, or "
            "cancel some on My queue.",
        )
    made = counts["last_hour"] or 0
    limit = limits["images_per_hour"]
    if made + images > limit:
        again = (counts["first"] or timezone.now()) + timedelta(hours=1)
        quota_refuse(
            user=user, team=team, reason=RefusalReason.IMAGES_PER_HOUR,
            message=f"You asked for {made} images in the last hour and this asks for {images} "
            f"more; {team.name} allows {limit} per user per hour. Try again after "
            f"{local_time(again)}.",
        )
    # The estimate reads the workers' reports: only worth it for a team with a budget.
    if has_limit(budget):
        team_budget_check(user=user, team=team, gpu_seconds=job_estimate(job) * copies,
                          budget=budget)


def training_quota_check(*, user, project, estimate):
    """Refuse a training run (its TrainingEstimate) past the user's runs at once, larger
    than any worker's GPU, or past the team's GPU budget."""
    team = project.team
    limit = effective_limits(team)["max_training_runs"]
    running = TrainingRun.objects.filter(
        created_by=user, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).count()
    if running >= limit:
        quota_refuse(
            user=user, team=team, reason=RefusalReason.TRAINING_RUNS,
            message=f"You have {running} training run{'s' if running != 1 else ''} queued or "
            f"running; {team.name} allows {limit} at once per user. Wait for it to finish or "
            "cancel it.",
        )
    largest = WorkerReport.objects.aggregate(largest=Max("gpu_memory_bytes"))["largest"]
    if largest and estimate.memory_bytes > largest:
        quota_refuse(
            user=user, team=team, reason=RefusalReason.GPU_MEMORY, status_code=403,
            message=f"This run needs about {estimate.memory_label()} of GPU memory, more than "
            f"the largest GPU of any worker ({largest / 1024**3:.1f} GB). Lower the resolution "
            "or batch size, or train without the text encoder or prior preservation.",
        )
    team_budget_check(user=user, team=team, gpu_seconds=estimate.seconds)


def has_limit(budget):
    """Whether a TeamBudget (or None) limits any period."""
    return budget is not None and (
        budget.daily_gpu_seconds is not None or budget.monthly_gpu_seconds is not None
    )


def team_budget_check(*, user, team, gpu_seconds, budget=_LOOK_UP):
    """Refuse what would take `team` past its daily or monthly GPU budget, counting what
    its queued and running jobs and runs are expected to spend as spent already.
    `budget`: the team's TeamBudget or None, if the caller has already fetched it."""
    if budget is _LOOK_UP:
        budget = TeamBudget.objects.filter(team=team).first()
    if not has_limit(budget):
        return
    promised = team_promised_gpu_seconds(team=team)
    for period in (BudgetPeriod.DAY, BudgetPeriod.MONTH):
        limit = budget.limit_for(period)
        if limit is None:
            continue
        spent = UsageRecord.objects.filter(team=team).in_period(period).gpu_seconds()
        if spent + promised + gpu_seconds <= limit:
            continue
        name = f"The {BudgetPeriod(period).label} GPU budget of {team.name}, {limit:,} GPU-seconds,"
        left = max(0, limit - spent - promised)
        state = (
            "is used up" if left < 1
            else f"has {left:,.0f} GPU-seconds left and this needs about {gpu_seconds:,.0f}"
        )
        if promised >= 1:
            state += (
                f" ({spent:,.0f} spent, {promised:,.0f} expected for queued and running work)"
            )
        _, resets = period_bounds(period)
        quota_refuse(
            user=user, team=team, reason=BUDGET_REASONS[period], status_code=403,
            message=f"{name} {state}. It resets at {local_time(resets)}; site staff can "
            "raise it.",
        )


def team_promised_gpu_seconds(*, team):
    """What the team's queued and running jobs and training runs are expected to spend:
    not charged until they end, but already on their way."""
    rates = {}
    promised = 0.0
    active = GenerationJob.objects.active().filter(project__team=team).select_related("model")
    for job in active:
        family = job.model.family
        if family not in rates:
            rates[family] = step_seconds(family)
        promised += rates[family] * job_work(job) * job.batch_size
    runs = TrainingRun.objects.filter(
        project__team=team, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).aggregate(seconds=Sum("estimated_seconds"))
    return promised + (runs["seconds"] or 0.0)


def team_budget_status(*, team):
    """[{period, limit, used, share, resets}] for each period `team` has a budget for."""
    budget = TeamBudget.objects.filter(team=team).first()
    rows = []
    for period in (BudgetPeriod.DAY, BudgetPeriod.MONTH):
        limit = budget.limit_for(period) if budget else None
        if limit is None:
            continue
        used = UsageRecord.objects.filter(team=team).in_period(period).gpu_seconds()
        rows.append({
            "period": BudgetPeriod(period),
            "limit": limit,
            "used": used,
            "percent": min(100, round(100 * used / limit)) if limit else 100,
            "resets": period_bounds(period)[1],
        })
    return rows


def team_usage(*, team, since):
    """The team's usage since `since`: totals by member, by model and by day."""
    records = UsageRecord.objects.filter(team=team, at__gte=since)
    totals = {"gpu_seconds": Sum("gpu_seconds"), "images": Sum("images"), "jobs": Count("pk")}
    return {
        "total": records.aggregate(**totals),
        "by_member": list(
            records.values("user__username").annotate(**totals).order_by("-gpu_seconds")
        ),
        "by_model": list(records.values("model_name").annotate(**totals).order_by("-gpu_seconds")),
        "by_day": list(
            records.annotate(day=TruncDate("at")).values("day").annotate(**totals).order_by("day")
        ),
    }
