"""A team's libraries of prompt text, styles and wildcards: every member sees and uses
them; editors add, change and delete them; outsiders get a 404, as for the rest of a team's
things. One set of views serves each library, described by a `TeamLibrary`."""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Model
from django.forms import ModelForm
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from generation.loras.views import team_for
from studio.permissions import can, require


@dataclass(frozen=True)
class TeamLibrary:
    model: type[Model]  # with team, name, created_by and updated_at
    form: type[ModelForm]  # takes team=
    permission: str  # to add, change and delete
    singular: str  # "style": URL names, templates, the edit page's context
    plural: str  # "styles"
    label: Callable[[Model], str]  # how messages name an entry: "The style Ink", "__season__"

    @property
    def page(self):
        """The URL name of a team's library page."""
        return f"team_{self.plural}"

    def entry_for(self, user, entry_id):
        entry = get_object_or_404(self.model.objects.select_related("team"), pk=entry_id)
        require(user, self.permission, entry.team)
        return entry


@login_required
@require_http_methods(["GET", "POST"])
def library_page(request, team_id, library):
    team = team_for(request.user, team_id, "view")
    form = library.form(team=team)
    status = 200
    if request.method == "POST":
        require(request.user, library.permission, team)
        form = library.form(request.POST, team=team)
        if form.is_valid():
            entry = form.save(commit=False)
            entry.created_by = request.user
            entry.save()
            added = f"{library.label(entry)} is in {team.name}'s {library.plural}."
            messages.success(request, added)
            return redirect(library.page, team.pk)
        status = 422
    context = {
        "team": team,
        "form": form,
        "may_manage": can(request.user, library.permission, team),
        library.plural: library.model.objects.filter(team=team),
    }
    return render(request, f"generation/{library.singular}_library.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def entry_edit(request, entry_id, library):
    entry = library.entry_for(request.user, entry_id)
    form = library.form(instance=entry, team=entry.team)
    status = 200
    if request.method == "POST":
        form = library.form(request.POST, instance=entry, team=entry.team)
        if form.is_valid():
            entry = form.save(commit=False)
            entry.updated_at = timezone.now()
            entry.save()
            messages.success(request, f"{library.label(entry)} was saved.")
            return redirect(library.page, entry.team_id)
        status = 422
    context = {"team": entry.team, "form": form, library.singular: entry}
    return render(request, f"generation/{library.singular}_edit.html", context, status=status)


@login_required
@require_POST
def entry_delete(request, entry_id, library):
    entry = library.entry_for(request.user, entry_id)
    entry.delete()
    messages.success(request, f"{library.label(entry)} was deleted from the {library.plural}.")
    return redirect(library.page, entry.team_id)


def library_urls(library):
    """A library's three URLs: the team's page (list and add), an entry's edit and delete."""
    extra = {"library": library}
    return [
        path(f"teams/<int:team_id>/{library.plural}/", library_page, extra, name=library.page),
        path(f"{library.plural}/<int:entry_id>/edit/", entry_edit, extra,
             name=f"{library.singular}_edit"),
        path(f"{library.plural}/<int:entry_id>/delete/", entry_delete, extra,
             name=f"{library.singular}_delete"),
    ]
