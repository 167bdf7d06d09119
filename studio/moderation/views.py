"""The moderator panel: case queue, case actions, audit log, policies.

Every panel page answers 404 to anyone who moderates nothing, so the panel's existence
isn't advertised; team moderators see and act on their teams' cases only."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from studio.accounts.models import Team
from studio.moderation.forms import CaseActionForm, CaseFilterForm, PolicyForm, PolicyTestForm
from studio.moderation.models import (
    AuditEntry,
    Case,
    CaseKind,
    CaseStatus,
    Policy,
    PromptBlock,
    Standing,
    is_moderator,
    is_site_moderator,
    policies_for,
)
from studio.moderation.policy import find_matches
from studio.moderation.services import (
    REASON_CODES,
    REPEAT_WINDOW,
    audit,
    case_escalate,
    case_resolve,
    suspension_lift,
)
from studio.permissions import require


def require_moderator(user):
    if not is_moderator(user):
        raise Http404


@login_required
def case_queue(request):
    require_moderator(request.user)
    filters = CaseFilterForm(request.GET or None)
    filters.is_valid()
    chosen = getattr(filters, "cleaned_data", {})
    cases = Case.objects.visible_to(request.user).select_related(
        "subject_user__standing", "team"
    )
    status = chosen.get("status") or "open"
    if status == "escalated":
        cases = cases.filter(status=CaseStatus.OPEN, escalated=True)
    elif status != "all":
        cases = cases.filter(status=status)
    if chosen.get("kind"):
        cases = cases.filter(kind=chosen["kind"])
    if chosen.get("team"):
        cases = cases.filter(team_id=chosen["team"])
    cases = list(cases.order_by("created_at", "id")[:200])
    attach_recent_blocks(cases)
    open_counts = {
        kind: Case.objects.visible_to(request.user).open().filter(kind=kind).count()
        for kind, _ in CaseKind.choices
    }
    context = {
        "cases": cases,
        "teams": Team.objects.filter(
            pk__in=Case.objects.visible_to(request.user).values("team_id")
        ),
        "team_id": chosen.get("team"),
        "filters": filters,
        "status": status,
        "kind": chosen.get("kind") or "",
        "kinds": [(kind, label, open_counts[kind]) for kind, label in CaseKind.choices],
        "action_form": CaseActionForm(),
        "site_moderator": is_site_moderator(request.user),
        "now": timezone.now(),
    }
    return render(request, "moderation/queue.html", context)


RECENT_BLOCKS = 5


def attach_recent_blocks(cases):
    """Each prompt-repeat case's latest blocked prompts, as `case.recent_blocks`, in one
    query for the page."""
    repeat = [case for case in cases if case.kind == CaseKind.PROMPT_REPEAT]
    for case in cases:
        case.recent_blocks = []
    if not repeat:
        return
    blocks = PromptBlock.objects.filter(
        user_id__in={case.subject_user_id for case in repeat},
        team_id__in={case.team_id for case in repeat},
        created_at__gte=min(case.created_at for case in repeat) - REPEAT_WINDOW,
    ).order_by("-created_at", "-id")[:1000]
    for block in blocks:
        for case in repeat:
            if (
                (block.user_id, block.team_id) == (case.subject_user_id, case.team_id)
                and len(case.recent_blocks) < RECENT_BLOCKS
                and block.created_at >= case.created_at - REPEAT_WINDOW
            ):
                case.recent_blocks.append(block)


def case_for(user, case_id):
    require_moderator(user)
    return get_object_or_404(Case.objects.visible_to(user), pk=case_id)


@login_required
@require_POST
def case_act(request, case_id):
    case = case_for(request.user, case_id)
    form = CaseActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an action and a reason.")
        return redirect("moderation_queue")
    action = form.cleaned_data["action"]
    site_moderator = is_site_moderator(request.user)
    if action == "ban" and not site_moderator:
        messages.error(request, "Only site moderators suspend accounts; escalate instead.")
        return redirect("moderation_queue")
    if action == "escalate":
        if site_moderator:
            messages.error(request, "Site moderators decide escalated cases themselves.")
            return redirect("moderation_queue")
        try:
            case_escalate(
                case=case, moderator=request.user,
                reason_code=form.cleaned_data["reason_code"], note=form.cleaned_data["note"],
            )
        except ValueError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Case {case.pk} is with the site moderators.")
        return redirect("moderation_queue")
    try:
        case_resolve(
            case=case, moderator=request.user, action=action,
            reason_code=form.cleaned_data["reason_code"], note=form.cleaned_data["note"],
            days=form.cleaned_data["days"] if form.cleaned_data["days"] is not None else 7,
        )
    except ValueError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Case {case.pk}: {case.get_resolution_display()}.")
    return redirect("moderation_queue")


@login_required
def suspensions(request):
    """Site moderators: who is suspended now, and lifting a suspension."""
    if not is_site_moderator(request.user):
        raise Http404
    if request.method == "POST":
        standing = get_object_or_404(Standing, user_id=request.POST.get("user"))
        reason_code = request.POST.get("reason_code", "")
        if reason_code not in dict(REASON_CODES):
            messages.error(request, "Choose a reason.")
        elif not standing.is_suspended():
            messages.error(request, f"{standing.user.username} is not suspended.")
        else:
            suspension_lift(
                user=standing.user, moderator=request.user, reason_code=reason_code,
                note=request.POST.get("note", "")[:2000],
            )
            messages.success(request, f"{standing.user.username} may generate again.")
        return redirect("moderation_suspensions")
    standings = (
        Standing.objects.filter(suspended_until__gt=timezone.now())
        .select_related("user")
        .order_by("suspended_until")
    )
    context = {"standings": standings, "reason_codes": REASON_CODES, "site_moderator": True}
    return render(request, "moderation/suspensions.html", context)


@login_required
def audit_log(request):
    require_moderator(request.user)
    entries = AuditEntry.objects.visible_to(request.user).select_related("actor", "team")
    action = request.GET.get("action", "").strip()
    if action:
        entries = entries.filter(action__startswith=action)
    context = {
        "entries": entries[:300],
        "action": action,
        "site_moderator": is_site_moderator(request.user),
    }
    return render(request, "moderation/audit_log.html", context)


def policy_page(request, policy, *, back_url, title):
    """Edit a policy and try sample prompts against the policies that apply with it."""
    form = PolicyForm(instance=policy)
    if request.method == "POST":
        before = {name: getattr(policy, name) for name in PolicyForm.Meta.fields}
        form = PolicyForm(request.POST, instance=policy)
        if form.is_valid():
            with transaction.atomic():
                policy = form.save(commit=False)
                policy.updated_by = request.user
                policy.save()
                audit(
                    actor=request.user, action="policy.update",
                    target=f"policy:{policy.team_id or 'site'}", team=policy.team,
                    before=before,
                    after={name: getattr(policy, name) for name in PolicyForm.Meta.fields},
                )
            messages.success(request, "Policy saved.")
            return redirect(back_url)
    tester = PolicyTestForm(request.GET if "sample" in request.GET else None)
    results = None
    if tester.is_bound and tester.is_valid():
        applying = policies_for(policy.team)
        results = [
            (label, text, find_matches(text, applying))
            for label, text in (
                ("Prompt", tester.cleaned_data["sample"]),
                ("Negative prompt", tester.cleaned_data["sample_negative"]),
            )
            if text
        ]
    context = {
        "form": form, "tester": tester, "results": results, "policy": policy, "title": title,
        "team": policy.team,
    }
    return render(request, "moderation/policy.html", context)


@login_required
def site_policy(request):
    if not is_site_moderator(request.user):
        raise Http404
    policy = Policy.objects.filter(team__isnull=True).first() or Policy()
    return policy_page(
        request, policy, back_url=request.path, title="Site prompt policy"
    )


@login_required
def team_policy(request, team_id):
    team = get_object_or_404(Team, pk=team_id)
    require(request.user, "manage_policy", team)
    policy = Policy.objects.filter(team=team).first() or Policy(team=team)
    return policy_page(request, policy, back_url=request.path, title=f"{team.name}: prompt policy")
