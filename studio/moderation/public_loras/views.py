"""Public LoRAs: browsable and downloadable by everyone once a site moderator approved
them; the owner requests publishing (or makes one private again) from the LoRA's page.
A LoRA that is not public is a 404 here, except to the site moderators deciding on it."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation.loras.forms import LoraSearchForm
from generation.loras.models import Lora
from studio.moderation.models import is_site_moderator
from studio.moderation.public_loras.services import (
    browsable_loras,
    lora_publish_request,
    lora_unpublish,
    may_publish,
    pending_request,
)
from studio.permissions import can, require


def public_lora_for(user, lora_id):
    lora = get_object_or_404(Lora.objects.select_related("team", "created_by"), pk=lora_id)
    if lora.is_public and not lora.disabled_reason:
        return lora
    if is_site_moderator(user) and pending_request(lora) is not None:
        return lora  # to decide on its publishing request
    raise Http404


@require_GET
def public_loras(request):
    search = LoraSearchForm(request.GET)
    context = {
        "search": search,
        "loras": browsable_loras().search(**search.filters()).order_by("name", "id"),
        "is_filtered": any(request.GET.get(name) for name in ("q", "family")),
    }
    return render(request, "generation/public_loras.html", context)


@require_GET
def public_lora_detail(request, lora_id):
    lora = public_lora_for(request.user, lora_id)
    # Signed-in people outside its team may report it (its team fixes its own LoRAs).
    may_report = lora.is_public and request.user.is_authenticated and not can(
        request.user, "view", lora.team
    )
    context = {"lora": lora, "may_report": may_report}
    return render(request, "generation/public_lora_detail.html", context)


@login_required
@require_GET
def public_lora_file(request, lora_id):
    lora = public_lora_for(request.user, lora_id)
    try:
        opened = lora.file.open("rb")
    except FileNotFoundError as error:
        raise Http404("The file is missing from storage.") from error
    filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in lora.name)
    return FileResponse(opened, as_attachment=True, filename=f"{filename}.safetensors",
                        content_type="application/octet-stream")


def owned_lora(user, lora_id):
    lora = get_object_or_404(Lora.objects.select_related("team"), pk=lora_id)
    require(user, "view", lora.team)  # others: 404
    if not may_publish(user, lora):
        raise PermissionDenied("Only who added the LoRA or a team admin may publish it.")
    return lora


@login_required
@require_POST
def lora_publish(request, lora_id):
    lora = owned_lora(request.user, lora_id)
    try:
        lora_publish_request(lora=lora, user=request.user, note=request.POST.get("note", ""))
    except ValidationError as error:
        messages.error(request, f"“{lora.name}” can't be published: {' '.join(error.messages)}")
    else:
        messages.success(
            request, f"Publishing “{lora.name}” is requested: a site moderator will decide."
        )
    return redirect(lora)


@login_required
@require_POST
def lora_unpublish_view(request, lora_id):
    lora = owned_lora(request.user, lora_id)
    lora_unpublish(lora=lora, user=request.user)
    messages.success(request, f"“{lora.name}” is private to {lora.team.name} again.")
    return redirect(lora)
