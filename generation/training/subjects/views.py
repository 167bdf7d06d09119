"""A team's subject library: every member sees its subjects and their images; editors add
subjects and images, place crops, write captions, record or revoke consent. Outsiders get
a 404 for every page and file."""

import io

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from PIL import Image as PILImage

from generation.training.services import (
    preset_choices,
    preset_notes,
    trainable_models,
    training_estimate,
)
from generation.training.subjects.forms import (
    CaptionForm,
    ConsentForm,
    CropForm,
    RevokeConsentForm,
    SubjectForm,
    SubjectImagesForm,
    TrainingForm,
)
from generation.training.subjects.models import (
    MAX_SUBJECT_IMAGES,
    MIN_SUBJECT_IMAGES,
    Subject,
    SubjectImage,
)
from generation.training.subjects.services import (
    MIN_SUBJECT_IMAGE_SIDE,
    consent_record,
    consent_revoke,
    subject_create,
    subject_delete,
    subject_image_caption,
    subject_image_crop,
    subject_image_delete,
    subject_images_add,
)
from studio.accounts.models import Project, Team
from studio.permissions import can, require
from studio.throttling import upload_rate_limited

CROP_PREVIEW_SIDE = 256


def subject_for(user, subject_id, action):
    subject = get_object_or_404(Subject.objects.select_related("team"), pk=subject_id)
    require(user, "view" if action == "view" else "manage_subjects", subject.team)
    return subject


def subject_image_for(user, image_id, action):
    image = get_object_or_404(
        SubjectImage.objects.select_related("subject", "subject__team"), pk=image_id
    )
    require(user, "view" if action == "view" else "manage_subjects", image.subject.team)
    return image


@login_required
@require_GET
def team_subjects(request, team_id):
    team = require(request.user, "view", get_object_or_404(Team, pk=team_id))
    subjects = (
        team.subjects.annotate(
            image_count=Count("images", distinct=True),
            lora_count=Count("training_runs__lora", distinct=True),
            active_consents=Count("consents", filter=Q(consents__revoked_at__isnull=True),
                                  distinct=True),
        )
        .prefetch_related("images")
        .order_by("name", "id")
    )
    context = {
        "team": team,
        "subjects": subjects,
        "may_manage": can(request.user, "manage_subjects", team),
        "min_images": MIN_SUBJECT_IMAGES,
    }
    return render(request, "generation/subject_library.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def subject_new(request, team_id):
    team = require(request.user, "manage_subjects", get_object_or_404(Team, pk=team_id))
    form = SubjectForm(request.POST or None, team=team)
    if request.method == "POST" and form.is_valid():
        try:
            subject = subject_create(team=team, user=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error("token", error)
        else:
            messages.success(
                request,
                f"“{subject.name}” is in {team.name}'s subjects. Add {MIN_SUBJECT_IMAGES} to "
                f"{MAX_SUBJECT_IMAGES} images of it to train a LoRA.",
            )
            return redirect(subject)
    status = 422 if form.is_bound else 200
    return render(
        request, "generation/subject_new.html", {"team": team, "form": form}, status=status
    )


def detail_context(request, subject, **forms):
    user, team = request.user, subject.team
    may_manage = can(user, "manage_subjects", team)
    projects = [p for p in Project.objects.filter(team=team) if can(user, "generate", p)]
    page_error = forms.pop("page_error", "")
    training_form = forms.pop("training_form", None)
    if training_form is None and may_manage and projects:
        training_form = TrainingForm(
            projects=projects, models=trainable_models(user, projects[0]), subject=subject
        )
    models = list(training_form.fields["model"].queryset) if training_form is not None else []
    estimate = None
    if training_form is not None and not training_form.is_bound:
        model = training_form.fields["model"].queryset.first()
        if model is not None:
            estimate = training_estimate(model, training_form.initial)
    return {
        "team": team,
        "subject": subject,
        "estimate": estimate,
        "page_error": page_error,
        "images": subject.images.all(),
        "consent": subject.active_consent(),
        "past_consents": subject.consents.exclude(revoked_at__isnull=True),
        "runs": subject.training_runs.select_related("project", "lora", "created_by")
        .filter(project__in=[p.pk for p in Project.objects.filter(team=team)
                             if can(user, "view", p)])[:20],
        "may_manage": may_manage,
        "images_form": forms.pop("images_form", None) or SubjectImagesForm(),
        "consent_form": forms.pop("consent_form", None) or ConsentForm(),
        "revoke_form": forms.pop("revoke_form", None) or RevokeConsentForm(),
        "training_form": training_form,
        "projects": projects,
        "presets": preset_choices(models),
        "preset_notes": preset_notes(models),
        "refusal": subject.training_refusal(),
        "min_images": MIN_SUBJECT_IMAGES,
        "max_images": MAX_SUBJECT_IMAGES,
        "min_side": MIN_SUBJECT_IMAGE_SIDE,
    }


@login_required
@require_GET
def subject_detail(request, subject_id):
    subject = subject_for(request.user, subject_id, "view")
    return render(request, "generation/subject_detail.html", detail_context(request, subject))


@login_required
@require_POST
def subject_remove(request, subject_id):
    subject = subject_for(request.user, subject_id, "manage")
    team, name = subject.team, subject.name
    subject_delete(subject=subject, user=request.user)
    messages.success(request, f"“{name}” was deleted with its images and training runs.")
    return redirect("team_subjects", team.pk)


@login_required
@require_POST
@upload_rate_limited
def subject_images_upload(request, subject_id):
    subject = subject_for(request.user, subject_id, "manage")
    form = SubjectImagesForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            added = subject_images_add(
                subject=subject, user=request.user, uploads=form.cleaned_data["images"]
            )
        except ValidationError as error:
            form.add_error("images", error)
        else:
            messages.success(request, f"{added} image{'s' if added != 1 else ''} added.")
            return redirect(subject)
    context = detail_context(request, subject, images_form=form)
    return render(request, "generation/subject_detail.html", context, status=422)


@login_required
@require_GET
def subject_image_file(request, image_id, variant):
    """The stored image, or its training square (`crop`), to members of its team only."""
    image = subject_image_for(request.user, image_id, "view")
    if variant not in ("original", "crop"):
        raise Http404
    try:
        opened = image.file.open("rb")
    except FileNotFoundError as error:
        raise Http404("The image is missing from storage.") from error
    if variant == "crop":
        with opened:
            picture = PILImage.open(opened).convert("RGB").crop(image.crop_box())
        picture.thumbnail((CROP_PREVIEW_SIDE, CROP_PREVIEW_SIDE))
        buffer = io.BytesIO()
        picture.save(buffer, format="WEBP", quality=85)
        response = HttpResponse(buffer.getvalue(), content_type="image/webp")
    else:
        response = FileResponse(opened, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
@require_POST
def subject_image_update(request, image_id):
    """Crop and caption of one image; HTMX gets the image's card back."""
    image = subject_image_for(request.user, image_id, "manage")
    crop_form, caption_form = CropForm(request.POST), CaptionForm(request.POST)
    status = 200
    if crop_form.is_valid() and caption_form.is_valid():
        data = crop_form.cleaned_data
        try:
            if data["reset"]:
                subject_image_crop(image=image, user=request.user)
            else:
                subject_image_crop(
                    image=image, user=request.user, x=data["x"], y=data["y"], size=data["size"]
                )
        except ValidationError as error:
            crop_form.add_error("size", error)
            status = 422
        else:
            subject_image_caption(
                image=image, user=request.user, caption=caption_form.cleaned_data["caption"]
            )
    else:
        status = 422
    if status == 200 and not request.htmx:
        messages.success(request, "Image saved.")
        return redirect(image.subject)
    image.refresh_from_db()
    context = {
        "image": image,
        "may_manage": True,
        "crop_form": crop_form,
        "min_side": MIN_SUBJECT_IMAGE_SIDE,
        "saved": status == 200,
        # A refused crop comes back as typed, to be corrected.
        "posted": None if status == 200 else {
            name: request.POST.get(name, "") for name in ("x", "y", "size", "caption")
        },
    }
    return render(
        request, "generation/subject_detail.html#subject-image", context, status=status
    )


@login_required
@require_POST
def subject_image_remove(request, image_id):
    image = subject_image_for(request.user, image_id, "manage")
    subject = image.subject
    subject_image_delete(image=image, user=request.user)
    if request.htmx:
        return HttpResponse("")
    messages.success(request, "Image removed.")
    return redirect(subject)


@login_required
@require_POST
def subject_consent(request, subject_id):
    subject = subject_for(request.user, subject_id, "manage")
    form = ConsentForm(request.POST)
    if form.is_valid():
        try:
            consent_record(subject=subject, user=request.user, **form.cleaned_data)
        except ValidationError as error:
            context = detail_context(request, subject, page_error=" ".join(error.messages))
            return render(request, "generation/subject_detail.html", context, status=422)
        else:
            messages.success(request, f"Consent of {form.cleaned_data['given_by']} recorded.")
            return redirect(subject)
    context = detail_context(request, subject, consent_form=form)
    return render(request, "generation/subject_detail.html", context, status=422)


@login_required
@require_POST
def subject_consent_revoke(request, subject_id):
    subject = subject_for(request.user, subject_id, "manage")
    form = RevokeConsentForm(request.POST)
    if form.is_valid():
        try:
            disabled = consent_revoke(
                subject=subject, user=request.user, reason=form.cleaned_data["reason"]
            )
        except ValidationError as error:
            context = detail_context(request, subject, page_error=" ".join(error.messages))
            return render(request, "generation/subject_detail.html", context, status=422)
        else:
            names = ", ".join(f"“{lora.name}”" for lora in disabled)
            messages.warning(
                request,
                "Consent revoked."
                + (f" Disabled: {names}; jobs can no longer use them." if disabled else ""),
            )
            return redirect(subject)
    context = detail_context(request, subject, revoke_form=form)
    return render(request, "generation/subject_detail.html", context, status=422)

