"""A team's LoRA library: every member browses it; editors upload, edit and delete.
Outsiders get a 404 for every page and file, as for the rest of a team's things."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from gallery.models import Image
from generation.loras.forms import LoraEditForm, LoraSearchForm, LoraUploadForm
from generation.loras.models import Lora
from generation.loras.services import (
    LoraUploadHandler,
    format_bytes,
    lora_create,
    lora_delete,
)
from studio.accounts.models import Team
from studio.permissions import can, require
from studio.throttling import upload_rate_limited

USED_BY_IMAGES = 48


def team_for(user, team_id, action):
    return require(user, action, get_object_or_404(Team, pk=team_id))


def lora_for(user, lora_id, action):
    lora = get_object_or_404(Lora.objects.select_related("team", "created_by"), pk=lora_id)
    if action == "view":
        require(user, "view", lora.team)
    else:
        require(user, "manage_loras", lora.team)
    return lora


@login_required
@require_GET
def team_loras(request, team_id):
    team = team_for(request.user, team_id, "view")
    search = LoraSearchForm(request.GET)
    loras = (
        Lora.objects.for_team(team)
        .search(**search.filters())
        .with_usage()
        .select_related("created_by")
    )
    context = {
        "team": team,
        "search": search,
        "loras": loras,
        "is_filtered": any(request.GET.get(name) for name in ("q", "family")),
        "may_manage": can(request.user, "manage_loras", team),
        "has_any": Lora.objects.for_team(team).exists(),
    }
    template = "generation/lora_library.html"
    if request.htmx and request.htmx.target == "lora-results":
        template += "#lora-results"
    return render(request, template, context)


@csrf_exempt  # checked by _lora_upload, once the upload handler is in place
@login_required
@require_http_methods(["GET", "POST"])
@upload_rate_limited
def lora_upload(request, team_id):
    # Before anything reads the body: outsiders and viewers never get a file stored.
    team = team_for(request.user, team_id, "manage_loras")
    if request.method == "POST":
        limit = settings.STUDIO_MAX_LORA_BYTES
        request.upload_handlers.insert(0, LoraUploadHandler(request, limit))
    return _lora_upload(request, team)


# Which upload field a refusal from lora_create belongs to.
_ERROR_FIELDS = {"family": "family", "name": "name"}


@csrf_protect
def _lora_upload(request, team):
    form = LoraUploadForm(request.POST or None, request.FILES or None, team=team)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            lora = lora_create(
                team=team,
                user=request.user,
                checked=form.checked,
                name=data["name"],
                description=data["description"],
                family=data["family"],
                default_weight=data["default_weight"],
                trigger_words=data["trigger_words"],
            )
        except ValidationError as error:
            form.add_error(_ERROR_FIELDS.get(error.code, "file"), error)
        else:
            messages.success(
                request,
                f"“{lora.name}” is in {team.name}'s library. Use it with "
                f"{lora.prompt_tag()} or pick it in the studio.",
            )
            return redirect(lora)
    status = 422 if form.is_bound else 200
    context = {
        "team": team,
        "form": form,
        "max_size": format_bytes(settings.STUDIO_MAX_LORA_BYTES),
    }
    return render(request, "generation/lora_upload.html", context, status=status)


@login_required
@require_GET
def lora_detail(request, lora_id):
    lora = lora_for(request.user, lora_id, "view")
    images = (
        Image.objects.filter(job__job_loras__lora=lora)
        .select_related("project")
        .distinct()
        .order_by("-created_at", "-id")
    )
    jobs = lora.job_uses.order_by().values("job").distinct()
    context = {
        "lora": lora,
        "team": lora.team,
        "images": images[:USED_BY_IMAGES],
        "image_count": images.count(),
        "usage_count": jobs.count(),
        "may_manage": can(request.user, "manage_loras", lora.team),
    }
    return render(request, "generation/lora_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def lora_edit(request, lora_id):
    lora = lora_for(request.user, lora_id, "manage")
    saved_name = lora.name
    form = LoraEditForm(request.POST or None, instance=lora)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"“{lora.name}” saved.")
        return redirect(lora)
    status = 422 if form.is_bound else 200
    context = {"lora": lora, "team": lora.team, "form": form, "saved_name": saved_name}
    return render(request, "generation/lora_edit.html", context, status=status)


@login_required
@require_POST
def lora_delete_view(request, lora_id):
    lora = lora_for(request.user, lora_id, "manage")
    team, name = lora.team, lora.name
    lora_delete(lora=lora, user=request.user)
    messages.success(
        request,
        f"“{name}” was removed from {team.name}'s library. Images made with it keep its name "
        "and hash.",
    )
    return redirect(reverse("team_loras", args=[team.pk]))


@login_required
@require_GET
def lora_file(request, lora_id):
    """The .safetensors file, only to members of its team."""
    lora = lora_for(request.user, lora_id, "view")
    try:
        opened = lora.file.open("rb")
    except FileNotFoundError as error:
        raise Http404("The file is missing from storage.") from error
    filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in lora.name)
    return FileResponse(
        opened,
        as_attachment=True,
        filename=f"{filename}.safetensors",
        content_type="application/octet-stream",
    )
