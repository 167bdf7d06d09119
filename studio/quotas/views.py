"""The team's usage page and limits form, site staff's page of every team's usage and
budget, and cancelling many queued jobs at once."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generation.services import jobs_cancel_queued
from studio.accounts.models import Membership, Team
from studio.permissions import can, require
from studio.quotas.forms import TeamBudgetForm, TeamLimitsForm
from studio.quotas.models import (
    BudgetPeriod,
    QuotaRefusal,
    TeamBudget,
    TeamLimits,
    UsageRecord,
    WorkerReport,
    effective_limits,
    period_bounds,
)
from studio.quotas.services import team_budget_status, team_usage

USAGE_DAYS = 30
CHART_WIDTH, CHART_HEIGHT = 600, 160


def team_for(user, team_id, action):
    return require(user, action, get_object_or_404(Team, pk=team_id))


def usage_chart(by_day, *, days):
    """Bars for the last `days` days (empty ones too), in CHART_WIDTH x CHART_HEIGHT."""
    spent = {row["day"]: row["gpu_seconds"] for row in by_day}
    today = timezone.localdate()
    dates = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    peak = max(spent.values(), default=0) or 1
    slot = CHART_WIDTH / days
    bars = []
    for n, day in enumerate(dates):
        seconds = spent.get(day, 0)
        height = round(CHART_HEIGHT * seconds / peak, 1)
        bars.append({
            "day": day, "gpu_seconds": seconds, "x": round(n * slot + 1, 1),
            "y": round(CHART_HEIGHT - height, 1), "width": round(slot - 2, 1), "height": height,
        })
    return {"bars": bars, "peak": peak, "width": CHART_WIDTH, "height": CHART_HEIGHT,
            "first": dates[0], "last": dates[-1]}


@login_required
@require_GET
def team_usage_view(request, team_id):
    # Site staff see every team's usage, as on their page of all teams.
    if request.user.is_staff:
        team = get_object_or_404(Team, pk=team_id)
    else:
        team = team_for(request.user, team_id, "view")
    since = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=USAGE_DAYS - 1
    )
    usage = team_usage(team=team, since=since)
    refusals = (
        QuotaRefusal.objects.filter(team=team, at__gte=since)
        .values("reason").annotate(count=Count("pk")).order_by("-count")
    )
    context = {
        "team": team,
        "days": USAGE_DAYS,
        "usage": usage,
        "chart": usage_chart(usage["by_day"], days=USAGE_DAYS),
        "budgets": team_budget_status(team=team),
        "limits": effective_limits(team),
        "refusals": [
            {"label": QuotaRefusal(reason=row["reason"]).get_reason_display(), **row}
            for row in refusals
        ],
        "may_manage": can(request.user, "manage_members", team),
    }
    return render(request, "quotas/team_usage.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def team_limits_view(request, team_id):
    team = team_for(request.user, team_id, "manage_members")
    limits = TeamLimits.objects.filter(team=team).first() or TeamLimits(team=team)
    form = TeamLimitsForm(request.POST or None, instance=limits)
    if request.method == "POST":
        if form.is_valid():
            limits = form.save(commit=False)
            limits.updated_by, limits.updated_at = request.user, timezone.now()
            limits.save()
            messages.success(request, f"{team.name}'s limits are saved; they apply to new jobs.")
            return redirect("team_usage", team.pk)
        return render(request, "quotas/team_limits.html", {"team": team, "form": form},
                      status=422)
    return render(request, "quotas/team_limits.html", {"team": team, "form": form})


def require_staff(user):
    """Site staff only; everyone else gets a 404, as for other site-wide panels."""
    if not user.is_staff:
        raise Http404


def site_usage_rows(forms_by_team=None):
    """Every team with this month's and today's usage, budgets, refusals and a budget form."""
    month_start, _ = period_bounds(BudgetPeriod.MONTH)
    day_start, _ = period_bounds(BudgetPeriod.DAY)
    month = dict(
        UsageRecord.objects.filter(at__gte=month_start).values_list("team")
        .annotate(Sum("gpu_seconds"))
    )
    day = dict(
        UsageRecord.objects.filter(at__gte=day_start).values_list("team")
        .annotate(Sum("gpu_seconds"))
    )
    refused = dict(
        QuotaRefusal.objects.filter(at__gte=month_start).values_list("team")
        .annotate(Count("pk"))
    )
    budgets = {budget.team_id: budget for budget in TeamBudget.objects.all()}
    forms_by_team = forms_by_team or {}
    rows = []
    for team in Team.objects.order_by("name"):
        budget = budgets.get(team.pk)
        rows.append({
            "team": team,
            "month": month.get(team.pk, 0),
            "day": day.get(team.pk, 0),
            "budget": budget,
            "refusals": refused.get(team.pk, 0),
            "form": forms_by_team.get(team.pk)
            or TeamBudgetForm(instance=budget, prefix=f"team-{team.pk}"),
        })
    return rows


@login_required
@require_GET
def site_usage_view(request):
    require_staff(request.user)
    context = {"rows": site_usage_rows(), "workers": WorkerReport.objects.order_by("-last_seen")}
    return render(request, "quotas/site_usage.html", context)


@login_required
@require_POST
def team_budget_update(request, team_id):
    require_staff(request.user)
    team = get_object_or_404(Team, pk=team_id)
    budget = TeamBudget.objects.filter(team=team).first() or TeamBudget(team=team)
    form = TeamBudgetForm(request.POST, instance=budget, prefix=f"team-{team.pk}")
    if not form.is_valid():
        context = {
            "rows": site_usage_rows({team.pk: form}),
            "workers": WorkerReport.objects.order_by("-last_seen"),
            "failed_team": team,
        }
        return render(request, "quotas/site_usage.html", context, status=422)
    budget = form.save(commit=False)
    budget.updated_by, budget.updated_at = request.user, timezone.now()
    budget.save()
    messages.success(request, f"{team.name}'s GPU budget is saved.")
    return redirect("site_usage")


@login_required
@require_POST
def my_queue_cancel_all(request):
    canceled = jobs_cancel_queued(user=request.user, by=request.user)
    messages.success(
        request,
        f"Canceled {canceled} queued job{'s' if canceled != 1 else ''}."
        if canceled else "You had no queued jobs to cancel.",
    )
    return redirect("my_queue")


@login_required
@require_POST
def member_jobs_cancel(request, team_id, membership_id):
    team = team_for(request.user, team_id, "manage_members")
    membership = get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, team=team
    )
    canceled = jobs_cancel_queued(user=membership.user, by=request.user, team=team)
    name = membership.user.display_name()
    messages.success(
        request,
        f"Canceled {canceled} of {name}'s queued job{'s' if canceled != 1 else ''} in {team.name}."
        if canceled else f"{name} has no queued jobs in {team.name}.",
    )
    return redirect(team)


