"""A team's styles: every member sees and uses them; editors add, change and delete them.
Outsiders get a 404, as for the rest of a team's things."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from generation.loras.views import team_for
from generation.styles.forms import StyleForm
from generation.styles.models import Style
from studio.permissions import can, require


def style_for(user, style_id):
    style = get_object_or_404(Style.objects.select_related("team"), pk=style_id)
    require(user, "manage_styles", style.team)
    return style


@login_required
@require_http_methods(["GET", "POST"])
def team_styles(request, team_id):
    team = team_for(request.user, team_id, "view")
    may_manage = can(request.user, "manage_styles", team)
    form = StyleForm(team=team)
    status = 200
    if request.method == "POST":
        require(request.user, "manage_styles", team)
        form = StyleForm(request.POST, team=team)
        if form.is_valid():
            style = form.save(commit=False)
            style.created_by = request.user
            style.save()
            messages.success(request, f"The style {style.name} is in {team.name}'s styles.")
            return redirect("team_styles", team.pk)
        status = 422
    context = {
        "team": team,
        "form": form,
        "may_manage": may_manage,
        "styles": Style.objects.filter(team=team),
    }
    return render(request, "generation/style_library.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def style_edit(request, style_id):
    style = style_for(request.user, style_id)
    form = StyleForm(instance=style, team=style.team)
    status = 200
    if request.method == "POST":
        form = StyleForm(request.POST, instance=style, team=style.team)
        if form.is_valid():
            style = form.save(commit=False)
            style.updated_at = timezone.now()
            style.save()
            messages.success(request, f"The style {style.name} was saved.")
            return redirect("team_styles", style.team_id)
        status = 422
    context = {"team": style.team, "form": form, "style": style}
    return render(request, "generation/style_edit.html", context, status=status)


@login_required
@require_POST
def style_delete(request, style_id):
    style = style_for(request.user, style_id)
    style.delete()
    messages.success(request, f"The style {style.name} was deleted from the styles.")
    return redirect("team_styles", style.team_id)
