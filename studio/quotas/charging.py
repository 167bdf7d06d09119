"""Charging a team for what its jobs and training runs actually cost, run by the worker
that ran them, which also reports its GPU and its measured step times here."""

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from generation.models import JobStatus, TrainingRun
from studio.moderation.models import Notification
from studio.quotas.costs import job_estimate, job_work
from studio.quotas.models import (
    BudgetAlert,
    BudgetPeriod,
    TeamBudget,
    UsageKind,
    UsageRecord,
    WorkerReport,
    period_bounds,
)
from studio.quotas.services import ALERT_SHARE, local_time

# Weight of the newest measurement in a worker's moving average of step times.
MEASUREMENT_WEIGHT = 0.3


def results_gpu_seconds(passes):
    """A job's share of its batches' GPU time: every pass's results, each result's batch
    time split evenly among the batch's rows (one row per image)."""
    return sum(result.elapsed_s / result.batch_size for results in passes for result in results)


def usage_charge(*, job, passes):
    """Charge the team for `job`, which just ended: a finished job for the GPU time of
    `passes` (lists of GenerationResult), a failed or canceled one for its estimate's
    share of the steps it made. Once per job; the worker's report learns from it."""
    estimate = job_estimate(job)
    if job.status == JobStatus.FINISHED:
        spent, images = results_gpu_seconds(passes), job.batch_size
    else:
        total = job.total_steps()
        spent, images = (estimate * job.progress_step / total if total else 0.0), 0
    try:
        with transaction.atomic():
            UsageRecord.objects.create(
                team=job.project.team, user=job.created_by, kind=UsageKind.GENERATION, job=job,
                model_name=job.model.name, images=images, gpu_seconds=spent,
                estimated_gpu_seconds=estimate,
            )
    except IntegrityError:
        return  # charged already
    if job.status == JobStatus.FINISHED and spent > 0:
        worker_report_record(
            worker=job.worker,
            family=job.model.family,
            step_seconds=spent / (job_work(job) * job.batch_size),
        )
    budget_alert(team=job.project.team)


def training_usage_charge(*, run_id):
    """Charge the team for a training run that ended: the GPU was its from start to end.
    Once per run; nothing while it is still queued or running (taken over elsewhere)."""
    run = (
        TrainingRun.objects.select_related("project__team", "model", "created_by")
        .filter(pk=run_id, status__in=[JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED])
        .first()
    )
    if run is None:
        return
    spent = (run.finished_at - run.started_at).total_seconds() if run.started_at else 0.0
    try:
        with transaction.atomic():
            UsageRecord.objects.create(
                team=run.project.team, user=run.created_by, kind=UsageKind.TRAINING,
                training_run=run, model_name=run.model.name, gpu_seconds=max(0.0, spent),
                estimated_gpu_seconds=run.estimated_seconds,
            )
    except IntegrityError:
        return
    worker_report_record(worker=run.worker)
    budget_alert(team=run.project.team)


def worker_report_record(*, worker, family=None, step_seconds=None):
    """This worker's GPU and, with `family`, its latest measured seconds per megapixel-step
    folded into its moving average."""
    from gpu_workers.devices import device_description

    device, memory = device_description()
    report, _ = WorkerReport.objects.get_or_create(worker=worker or "unknown")
    report.device, report.gpu_memory_bytes, report.last_seen = device, memory, timezone.now()
    if family is not None:
        before = report.step_seconds.get(family)
        report.step_seconds[family] = step_seconds if before is None else (
            MEASUREMENT_WEIGHT * step_seconds + (1 - MEASUREMENT_WEIGHT) * before
        )
    report.save()


def budget_alert(*, team):
    """Tell the team's admins, once per period, that a budget is ALERT_SHARE spent."""
    from studio.accounts.models import Role

    budget = TeamBudget.objects.filter(team=team).first()
    if budget is None:
        return
    for period in (BudgetPeriod.DAY, BudgetPeriod.MONTH):
        limit = budget.limit_for(period)
        if not limit:
            continue
        used = UsageRecord.objects.filter(team=team).in_period(period).gpu_seconds()
        if used < ALERT_SHARE * limit:
            continue
        start, resets = period_bounds(period)
        _, created = BudgetAlert.objects.get_or_create(
            team=team, period=period, period_start=start
        )
        if not created:
            continue
        admins = team.memberships.filter(role__in=[Role.ADMIN, Role.OWNER]).select_related("user")
        label = BudgetPeriod(period).label
        Notification.objects.bulk_create(
            Notification(
                user=membership.user,
                message=f"{team.name} has used {100 * used / limit:.0f}% of its {label} GPU "
                f"budget ({used:,.0f} of {limit:,} GPU-seconds). At 100% new jobs are "
                f"refused until it resets at {local_time(resets)}.",
                url=reverse("team_usage", args=[team.pk]),
            )
            for membership in admins
        )
