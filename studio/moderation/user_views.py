"""What users see of moderation: reporting, their removals and appeals, notifications."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone

from gallery.models import Image
from generation.loras.models import Lora
from studio.moderation.forms import AppealForm, ReportForm
from studio.moderation.models import (
    Notification,
    Removal,
    is_site_moderator,
    moderated_team_ids,
)
from studio.moderation.removals import DecisionRefused, removal_appeal
from studio.moderation.reports import ReportRefused, report_create
from studio.permissions import can
from studio.redirects import safe_next_url


def reportable(user, kind, pk):
    """What `user` may report: an image or LoRA they may see, or another user; else 404."""
    if kind == "image":
        image = Image.objects.select_related("project__team", "created_by").filter(pk=pk).first()
        if image is not None and image.may_view(user):
            return image
    elif kind == "lora":
        lora = Lora.objects.select_related("team", "created_by").filter(pk=pk).first()
        if lora is not None and (lora.is_public or can(user, "view", lora.team)):
            return lora
    elif kind == "user":
        found = visible_user(user, pk)
        if found is not None:
            return found
    raise Http404


def visible_user(viewer, pk):
    """A user the viewer already sees somewhere: a teammate, the maker of an image the
    viewer may open, who added a public LoRA; site moderators see everyone. Anyone else is
    a 404 like an id that doesn't exist, so ids can't be walked to list accounts."""
    users = get_user_model().objects.filter(pk=pk, is_active=True)
    if is_site_moderator(viewer):
        return users.first()
    seen = (
        Q(memberships__team__memberships__user=viewer)
        | Q(pk__in=Image.objects.visible_to(viewer).values("created_by"))
        | Q(pk__in=Lora.objects.enabled().filter(is_public=True).values("created_by"))
    )
    return users.filter(seen).distinct().first()


def subject_name(kind, subject):
    if kind == "image":
        return f"image #{subject.pk}"
    if kind == "lora":
        return f"LoRA “{subject.name}”"
    return f"user {subject.username}"


def back_url(request, kind, subject):
    """Where the reporter came from (a same-site `next`), else the subject's page they
    may open: a LoRA's public page for those outside its team; home for a user."""
    if kind == "lora" and not can(request.user, "view", subject.team):
        fallback = reverse("public_lora_detail", args=[subject.pk])
    else:
        fallback = subject.get_absolute_url() if kind in ("image", "lora") else "/"
    return safe_next_url(request, request.GET.get("next"), fallback=fallback)


@login_required
def report(request, kind, pk):
    subject = reportable(request.user, kind, pk)
    form = ReportForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                report_create(
                    reporter=request.user, kind=kind, subject=subject,
                    reason=form.cleaned_data["reason"], note=form.cleaned_data["note"],
                )
            except ReportRefused as refused:
                form.add_error(None, str(refused))
            else:
                name = subject_name(kind, subject)
                messages.success(request, f"Thank you: the moderators will look at {name}.")
                return redirect(back_url(request, kind, subject))
        status = 422
    context = {
        "form": form, "kind": kind, "subject": subject,
        "name": subject_name(kind, subject), "back": back_url(request, kind, subject),
    }
    return render(request, "moderation/report.html", context, status=status)


def removal_for(user, pk):
    """A removal its owner, or a moderator of its team, may see; else 404."""
    removal = get_object_or_404(Removal.objects.select_related("team", "moderator"), pk=pk)
    team_ids = moderated_team_ids(user)
    if removal.owner_id == user.pk or team_ids is None or removal.team_id in team_ids:
        return removal
    raise Http404


@login_required
def removal_detail(request, pk):
    """Why something was removed, the strike it gave, and the one appeal."""
    removal = removal_for(request.user, pk)
    form = AppealForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if removal.owner_id != request.user.pk:
            raise Http404
        if form.is_valid():
            try:
                removal_appeal(removal=removal, user=request.user, note=form.cleaned_data["note"])
            except DecisionRefused as refused:
                form.add_error("note", str(refused))
            else:
                messages.success(request, "Your appeal is with the moderators.")
                return redirect(removal.get_absolute_url())
        status = 422
    removal.refresh_from_db()
    image = Image.objects.filter(pk=removal.image_id).first() if removal.image_id else None
    lora = Lora.objects.filter(pk=removal.lora_id).first() if removal.lora_id else None
    context = {
        "removal": removal, "form": form, "image": image, "lora": lora,
        "is_owner": removal.owner_id == request.user.pk,
        "appeal_case": removal.appeal_case, "now": timezone.now(),
    }
    return render(request, "moderation/removal.html", context, status=status)


@login_required
def notifications(request):
    """The user's messages from the moderators, newest first; seeing them marks them read."""
    items = list(Notification.objects.filter(user=request.user)[:100])
    unread = [item.pk for item in items if item.read_at is None]
    if unread:
        Notification.objects.filter(pk__in=unread).update(read_at=timezone.now())
    return render(request, "moderation/notifications.html", {"items": items, "unread": set(unread)})
