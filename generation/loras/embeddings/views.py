"""A team's textual-inversion embeddings: every member sees them; editors upload and
delete. Outsiders get a 404, as for the rest of a team's things."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from generation.loras.embeddings.models import Embedding
from generation.loras.embeddings.services import embedding_create, embedding_delete
from generation.loras.services import LoraUploadHandler, format_bytes
from generation.loras.views import team_for
from studio.permissions import can, require
from studio.throttling import upload_rate_limited


class EmbeddingUploadForm(forms.Form):
    file = forms.FileField(
        label="Embedding file",
        widget=forms.ClearableFileInput(attrs={"accept": ".safetensors"}),
        error_messages={"required": "Choose the embedding's .safetensors file."},
        help_text="A1111 (emb_params), diffusers (one token) or SDXL (clip_l and clip_g).",
    )
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="The word that calls it up in a prompt; empty: the file's name.",
    )


def library_context(request, team, form):
    return {
        "team": team,
        "form": form,
        "embeddings": Embedding.objects.for_team(team).select_related("created_by"),
        "may_manage": can(request.user, "manage_loras", team),
        "max_size": format_bytes(settings.STUDIO_MAX_LORA_BYTES),
    }


@login_required
@require_GET
def team_embeddings(request, team_id):
    team = team_for(request.user, team_id, "view")
    context = library_context(request, team, EmbeddingUploadForm())
    return render(request, "generation/embedding_library.html", context)


@csrf_exempt  # checked by _embedding_upload, once the upload handler is in place
@login_required
@require_POST
@upload_rate_limited
def embedding_upload(request, team_id):
    # Before anything reads the body: outsiders and viewers never get a file stored.
    team = team_for(request.user, team_id, "manage_loras")
    request.upload_handlers.insert(0, LoraUploadHandler(request, settings.STUDIO_MAX_LORA_BYTES))
    return _embedding_upload(request, team)


@csrf_protect
def _embedding_upload(request, team):
    form = EmbeddingUploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            embedding = embedding_create(
                team=team,
                user=request.user,
                upload=form.cleaned_data["file"],
                name=form.cleaned_data["name"],
            )
        except ValidationError as error:
            form.add_error("name" if error.code == "name" else "file", error)
        else:
            messages.success(
                request,
                f"“{embedding.name}” is in {team.name}'s embeddings: write {embedding.name} in a "
                f"prompt of a {embedding.get_family_display()} model to use it.",
            )
            return redirect("team_embeddings", team.pk)
    context = library_context(request, team, form)
    return render(request, "generation/embedding_library.html", context, status=422)


@login_required
@require_POST
def embedding_delete_view(request, embedding_id):
    embedding = get_object_or_404(Embedding.objects.select_related("team"), pk=embedding_id)
    require(request.user, "manage_loras", embedding.team)
    embedding_delete(embedding=embedding, user=request.user)
    messages.success(request, f"“{embedding.name}” was deleted from the embeddings.")
    return redirect("team_embeddings", embedding.team_id)
