"""The moderator panel: case queue, case actions, audit log, policies.

Every panel page answers 404 to anyone who moderates nothing, so the panel's existence
isn't advertised; team moderators see and act on their teams' cases only."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Q
from django.db.models.functions import Coalesce
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from gallery.collections.models import Collection
from gallery.models import THUMBNAIL_SIZES, Image, ModerationStatus, Visibility
from generation.loras.models import Lora
from studio.accounts.models import Team
from studio.moderation.forms import (
    ACTION_CHOICES,
    BulkActionForm,
    CaseActionForm,
    CaseFilterForm,
    PolicyForm,
    PolicyTestForm,
    SitePolicyForm,
)
from studio.moderation.models import (
    AuditEntry,
    Case,
    CaseKind,
    CaseStatus,
    ImageScan,
    Policy,
    PromptBlock,
    Removal,
    Report,
    Standing,
    is_moderator,
    is_site_moderator,
    policies_for,
)
from studio.moderation.policy import find_matches
from studio.moderation.removals import case_decide
from studio.moderation.services import (
    REASON_CODES,
    REPEAT_WINDOW,
    audit,
    suspension_lift,
)
from studio.permissions import require


def require_moderator(user):
    if not is_moderator(user):
        raise Http404


QUEUE_KINDS = [choice for choice in CaseKind.choices if choice[0] != CaseKind.APPEAL]


@login_required
def case_queue(request, appeals=False):
    """The case queue (appeals have their own, `appeals=True`): oldest first, filtered by
    reason, status and team; image cases show their scan scores and a blurred image."""
    require_moderator(request.user)
    filters = CaseFilterForm(request.GET or None)
    filters.is_valid()
    chosen = getattr(filters, "cleaned_data", {})
    visible = Case.objects.visible_to(request.user)
    visible = visible.filter(kind=CaseKind.APPEAL) if appeals else visible.queue()
    cases = visible.select_related("subject_user__standing", "team")
    status = chosen.get("status") or "open"
    if status == "escalated":
        cases = cases.filter(status=CaseStatus.OPEN, escalated=True)
    elif status != "all":
        cases = cases.filter(status=status)
    kind = "" if appeals else chosen.get("kind") or ""
    if kind:
        cases = cases.filter(kind=kind)
    if chosen.get("team"):
        cases = cases.filter(team_id=chosen["team"])
    cases = list(cases.order_by("created_at", "id")[:200])
    attach_recent_blocks(cases)
    attach_subjects(cases)
    open_counts = dict(
        visible.open().values_list("kind").annotate(count=Count("id")).values_list("kind", "count")
    )
    context = {
        "cases": cases,
        "appeals": appeals,
        "teams": Team.objects.filter(pk__in=visible.values("team_id")),
        "team_id": chosen.get("team"),
        "filters": filters,
        "status": status,
        "kind": kind,
        "kinds": [(value, label, open_counts.get(value, 0)) for value, label in QUEUE_KINDS],
        "open_appeals": Case.objects.visible_to(request.user).open()
        .filter(kind=CaseKind.APPEAL).count(),
        "action_form": CaseActionForm(),
        "site_moderator": is_site_moderator(request.user),
        "now": timezone.now(),
    }
    return render(request, "moderation/queue.html", context)


def attach_subjects(cases):
    """Each case's image (`case.image`, with `case.scan`), LoRA, collection (with its
    image counts), reports and removal, in a few queries for the page."""
    image_ids = {case.subject_image_id for case in cases if case.subject_image_id}
    lora_ids = {case.subject_lora_id for case in cases if case.subject_lora_id}
    collection_ids = {case.subject_collection_id for case in cases if case.subject_collection_id}
    public = Q(
        items__image__visibility=Visibility.PUBLIC,
        items__image__moderation_status=ModerationStatus.PASSED,
        items__image__deleted_at__isnull=True,
    )
    collections = Collection.objects.select_related("team").annotate(
        image_count=Count("items", filter=Q(items__image__deleted_at__isnull=True)),
        public_count=Count("items", filter=public),
    ).in_bulk(collection_ids) if collection_ids else {}
    images = Image.objects.select_related("project").in_bulk(image_ids)
    scans = ImageScan.objects.in_bulk(image_ids)
    loras = Lora.objects.only("pk", "name", "is_public").in_bulk(lora_ids) if lora_ids else {}
    reports = {}
    for report in Report.objects.filter(case__in=cases).select_related("reporter")[:2000]:
        reports.setdefault(report.case_id, []).append(report)
    removals = {
        removal.appeal_case_id: removal
        for removal in Removal.objects.filter(appeal_case__in=cases).select_related("moderator")
    }
    for case in cases:
        case.image = images.get(case.subject_image_id)
        case.scan = scans.get(case.subject_image_id)
        case.lora = loras.get(case.subject_lora_id)
        case.collection = collections.get(case.subject_collection_id)
        case.report_list = reports.get(case.pk, [])[:RECENT_REPORTS]
        case.removal = removals.get(case.pk)


RECENT_REPORTS = 5


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
    back = queue_url(case)
    if not form.is_valid():
        messages.error(request, "Choose an action and a reason.")
        return redirect(back)
    data = form.cleaned_data
    try:
        case_decide(
            case=case, moderator=request.user, action=data["action"],
            reason_code=data["reason_code"], note=data["note"],
            days=data["days"] if data["days"] is not None else 7,
            site_moderator=is_site_moderator(request.user),
        )
    except ValueError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Case {case.pk}: {done_label(case, data['action'])}.")
    return redirect(back)


def queue_url(case):
    return reverse("moderation_appeals" if case.kind == CaseKind.APPEAL else "moderation_queue")


def done_label(case, action):
    if action == "escalate":
        return "with the site moderators"
    case.refresh_from_db()
    return case.get_resolution_display().lower()


@login_required
@require_POST
def case_bulk(request):
    """One action for every selected case; each is decided (and audited) on its own, and
    the page says which were refused and why."""
    require_moderator(request.user)
    visible = Case.objects.visible_to(request.user)
    posted = [
        int(pk) for pk in request.POST.getlist("cases") if pk.isdecimal() and len(pk) <= 18
    ]
    found = {case.pk: case for case in visible.filter(pk__in=posted)}
    form = BulkActionForm(request.POST, case_ids=list(found))
    appeals = request.POST.get("queue") == "appeals"
    back = reverse("moderation_appeals" if appeals else "moderation_queue")
    if not form.is_valid():
        first = next(iter(form.errors.values()))[0]
        messages.error(request, f"Bulk action: {first}")
        return redirect(back)
    data = form.cleaned_data
    done, refused = [], []
    site_moderator = is_site_moderator(request.user)
    for pk in data["cases"]:
        try:
            case_decide(
                case=found[pk], moderator=request.user, action=data["action"],
                reason_code=data["reason_code"], note=data["note"],
                site_moderator=site_moderator,
            )
        except ValueError as error:
            refused.append(f"case {pk}: {error}")
        else:
            done.append(str(pk))
    if done:
        label = dict(ACTION_CHOICES)[data["action"]]
        messages.success(request, f"{label}: cases {', '.join(done)}.")
    for reason in refused:
        messages.error(request, reason)
    return redirect(back)


@login_required
def case_image(request, case_id):
    """The image a case is about, for the moderators who see the case (they are not
    members of its project, so the gallery's URLs are closed to them)."""
    case = case_for(request.user, case_id)
    image = get_object_or_404(Image, pk=case.subject_image_id or 0)
    name = image.thumbnail_name(THUMBNAIL_SIZES[-1])
    try:
        if name and image.file.storage.exists(name):
            handle, content_type = image.file.storage.open(name, "rb"), "image/webp"
        else:
            handle, content_type = image.file.open("rb"), "image/png"
    except FileNotFoundError as missing:
        raise Http404("The image's file is gone from storage.") from missing
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def suspensions(request):
    """Site moderators: who is suspended now, and lifting a suspension."""
    if not is_site_moderator(request.user):
        raise Http404
    if request.method == "POST":
        user_id = request.POST.get("user", "")
        if not user_id.isdecimal() or len(user_id) > 18:
            raise Http404
        standing = get_object_or_404(Standing, user_id=user_id)
        reason_code = request.POST.get("reason_code", "")
        if reason_code not in dict(REASON_CODES):
            messages.error(request, "Choose a reason.")
        elif not (standing.is_suspended() or standing.is_publishing_suspended()):
            messages.error(request, f"{standing.user.username} is not suspended.")
        else:
            suspension_lift(
                user=standing.user, moderator=request.user, reason_code=reason_code,
                note=request.POST.get("note", "")[:2000],
            )
            messages.success(request, f"{standing.user.username} may generate again.")
        return redirect("moderation_suspensions")
    now = timezone.now()
    standings = (
        Standing.objects.filter(
            Q(suspended_until__gt=now) | Q(publishing_suspended_until__gt=now)
        )
        .select_related("user")
        .order_by(Coalesce("suspended_until", "publishing_suspended_until"))
    )
    context = {
        "standings": standings, "reason_codes": REASON_CODES, "site_moderator": True, "now": now,
    }
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


def policy_page(request, policy, *, back_url, title, form_class=PolicyForm):
    """Edit a policy and try sample prompts against the policies that apply with it."""
    form = form_class(instance=policy)
    fields = form_class.Meta.fields
    if request.method == "POST":
        before = {name: getattr(policy, name) for name in fields}
        form = form_class(request.POST, instance=policy)
        if form.is_valid():
            with transaction.atomic():
                policy = form.save(commit=False)
                policy.updated_by = request.user
                policy.save()
                audit(
                    actor=request.user, action="policy.update",
                    target=f"policy:{policy.team_id or 'site'}", team=policy.team,
                    before=before,
                    after={name: getattr(policy, name) for name in fields},
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
        # Saved patterns the checker refuses (saved before RE2 ran them) are not applied.
        "refused_regexes": policy.compiled().refused_regexes if policy.pk else [],
    }
    return render(request, "moderation/policy.html", context)


@login_required
def site_policy(request):
    if not is_site_moderator(request.user):
        raise Http404
    policy = Policy.objects.filter(team__isnull=True).first() or Policy()
    return policy_page(
        request, policy, back_url=request.path, title="Site policy",
        form_class=SitePolicyForm,
    )


@login_required
def team_policy(request, team_id):
    team = get_object_or_404(Team, pk=team_id)
    require(request.user, "manage_policy", team)
    policy = Policy.objects.filter(team=team).first() or Policy(team=team)
    return policy_page(request, policy, back_url=request.path, title=f"{team.name}: prompt policy")
