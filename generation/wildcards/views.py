"""A team's wildcards: every member sees and uses them; editors add, change and delete
them. Outsiders get a 404, as for the rest of a team's things."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from generation.loras.views import team_for
from generation.wildcards.forms import WildcardForm
from generation.wildcards.models import Wildcard
from studio.permissions import can, require


def wildcard_for(user, wildcard_id):
    wildcard = get_object_or_404(Wildcard.objects.select_related("team"), pk=wildcard_id)
    require(user, "manage_wildcards", wildcard.team)
    return wildcard


@login_required
@require_http_methods(["GET", "POST"])
def team_wildcards(request, team_id):
    team = team_for(request.user, team_id, "view")
    may_manage = can(request.user, "manage_wildcards", team)
    form = WildcardForm(team=team)
    status = 200
    if request.method == "POST":
        require(request.user, "manage_wildcards", team)
        form = WildcardForm(request.POST, team=team)
        if form.is_valid():
            wildcard = form.save(commit=False)
            wildcard.created_by = request.user
            wildcard.save()
            messages.success(request, f"__{wildcard.name}__ is in {team.name}'s wildcards.")
            return redirect("team_wildcards", team.pk)
        status = 422
    context = {
        "team": team,
        "form": form,
        "may_manage": may_manage,
        "wildcards": Wildcard.objects.filter(team=team),
    }
    return render(request, "generation/wildcard_library.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def wildcard_edit(request, wildcard_id):
    wildcard = wildcard_for(request.user, wildcard_id)
    form = WildcardForm(instance=wildcard, team=wildcard.team)
    status = 200
    if request.method == "POST":
        form = WildcardForm(request.POST, instance=wildcard, team=wildcard.team)
        if form.is_valid():
            form.save()
            messages.success(request, f"__{wildcard.name}__ was saved.")
            return redirect("team_wildcards", wildcard.team_id)
        status = 422
    context = {"team": wildcard.team, "form": form, "wildcard": wildcard}
    return render(request, "generation/wildcard_edit.html", context, status=status)


@login_required
@require_POST
def wildcard_delete(request, wildcard_id):
    wildcard = wildcard_for(request.user, wildcard_id)
    wildcard.delete()
    messages.success(request, f"__{wildcard.name}__ was deleted from the wildcards.")
    return redirect("team_wildcards", wildcard.team_id)
