"""The model library: a list every signed-in user may browse, add and edit forms for site
staff, and each team's own settings (enabled, minimum role) for the team's admins."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generation.library.forms import (
    DiffusionModelForm,
    LibrarySearchForm,
    TeamModelSettingForm,
)
from generation.models import DiffusionModel, TeamModelSetting
from studio.accounts.models import Team
from studio.permissions import can, require


def require_staff(user):
    # The library is visible to every user, so its editors' pages answer 403, not 404.
    if not user.is_staff:
        raise PermissionDenied("Only site staff may add or edit library models.")


def library_models(user, params):
    """The search form and the models it finds; staff also see switched-off models."""
    search = LibrarySearchForm(params)
    models = DiffusionModel.objects.all() if user.is_staff else DiffusionModel.objects.usable()
    return search, models.search(**search.filters())


@login_required
@require_GET
def model_library(request):
    search, models = library_models(request.user, request.GET)
    context = {
        "search": search,
        "models": models,
        "is_filtered": any(request.GET.get(name) for name in ("q", "family", "kind")),
        "teams": Team.objects.for_user(request.user).distinct(),
    }
    template = "generation/model_library.html"
    if request.htmx and request.htmx.target == "model-results":
        template += "#model-results"
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def model_create(request):
    require_staff(request.user)
    form = DiffusionModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        model = form.save()
        messages.success(request, f"“{model.name}” is in the library.")
        return redirect("model_library")
    status = 422 if form.is_bound else 200
    return render(request, "generation/model_form.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def model_edit(request, model_id):
    require_staff(request.user)
    model = get_object_or_404(DiffusionModel, pk=model_id)
    form = DiffusionModelForm(request.POST or None, instance=model)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"“{model.name}” saved.")
        return redirect("model_library")
    status = 422 if form.is_bound else 200
    # The name as saved, for the title: the form may hold an unsaved one.
    saved_name = DiffusionModel.objects.filter(pk=model.pk).values_list("name", flat=True)[0]
    return render(
        request,
        "generation/model_form.html",
        {"form": form, "model": model, "saved_name": saved_name},
        status=status,
    )


def team_rows(team, user, models):
    """Each model with the team's setting, what it means for `user` and, for admins, the
    form that changes it."""
    settings = {row.model_id: row for row in TeamModelSetting.objects.filter(team=team)}
    may_manage = can(user, "manage_models", team)
    rows = []
    for model in models:
        setting = settings.get(model.pk)
        rows.append(
            {
                "model": model,
                "setting": setting,
                "refusal": model.refusal_reason(user, team, setting=setting),
                "form": team_setting_form(model, setting) if may_manage else None,
            }
        )
    return rows


def team_setting_form(model, setting, data=None):
    instance = setting or TeamModelSetting(model=model)
    return TeamModelSettingForm(data, instance=instance, model=model, prefix=f"m{model.pk}")


@login_required
@require_GET
def team_models(request, team_id):
    team = require(request.user, "view", get_object_or_404(Team, pk=team_id))
    search, models = library_models(request.user, request.GET)
    models = models.usable()  # switched off site-wide: not the team's business
    context = {
        "team": team,
        "search": search,
        "rows": team_rows(team, request.user, models),
        "is_filtered": any(request.GET.get(name) for name in ("q", "family", "kind")),
        "may_manage": can(request.user, "manage_models", team),
        "my_role": team.role_of(request.user),
    }
    template = "generation/team_models.html"
    if request.htmx and request.htmx.target == "model-results":
        template += "#model-results"
    return render(request, template, context)


@login_required
@require_POST
def team_model_setting(request, team_id, model_id):
    team = require(request.user, "manage_models", get_object_or_404(Team, pk=team_id))
    model = get_object_or_404(DiffusionModel.objects.usable(), pk=model_id)
    setting = TeamModelSetting.objects.filter(team=team, model=model).first()
    form = team_setting_form(model, setting, data=request.POST)
    if form.is_valid():
        setting = form.save(commit=False)
        setting.team, setting.model = team, model
        setting.updated_by, setting.updated_at = request.user, timezone.now()
        setting.save()
        state = "enabled" if setting.is_enabled else "switched off"
        role = setting.get_min_role_display() if setting.min_role else "the library default"
        message = f"“{model.name}” is {state} for {team.name}; minimum role: {role}."
        status = 200
    else:
        errors = "; ".join(" ".join(errs) for errs in form.errors.values())
        message, status = f"“{model.name}” not saved: {errors}", 422
    if not request.htmx:
        level = messages.SUCCESS if status == 200 else messages.ERROR
        messages.add_message(request, level, message)
        return redirect(reverse("team_models", args=[team.pk]))
    setting = TeamModelSetting.objects.filter(team=team, model=model).first()
    row = {
        "model": model,
        "setting": setting,
        "refusal": model.refusal_reason(request.user, team, setting=setting),
        "form": form if status != 200 else team_setting_form(model, setting),
    }
    context = {"team": team, "row": row, "may_manage": True, "row_message": message,
               "row_ok": status == 200}
    return render(request, "generation/team_models.html#model-row", context, status=status)
