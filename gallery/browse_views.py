"""Gallery pages: a project's, a team's and the user's own images, as thumbnail grids with
filters and infinite scroll."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from gallery import browse
from gallery.collections.views import select_context
from gallery.forms import GalleryFilterForm
from gallery.reactions.services import favourites_of, with_reactions
from studio.accounts.models import Project, Team
from studio.permissions import can, require

TEMPLATE = "gallery/gallery.html"


def gallery_response(request, scope, context, *, users=True, projects=False, narrow=False):
    """The whole page, or for HTMX the results (filters changed) or the next page."""
    choices = browse.filter_choices(scope, users=users, projects=projects, narrow=narrow)
    form = GalleryFilterForm(request.GET, choices=choices)
    filters = form.filters()
    sort = form.sort_order()
    images = browse.filter_images(scope, filters)
    if filters.get("favourites"):
        images = favourites_of(images, request.user)
    cursor = request.GET.get("cursor", "")
    if not browse.decode_sorted_cursor(cursor, sort):
        cursor = ""  # not one of ours (or of another order): start at the top
    page = browse.sorted_page(with_reactions(images, request.user), sort=sort, cursor=cursor)
    context = {
        **context,
        "form": form,
        "filtered": any(name != "sort" for name in filters),
        "sort": sort,
        "page": page,
        "images": page.images,
        "show_meta": True,
        "reactions": True,
        **select_context(request.user, team=context.get("team")),
    }
    return grid_response(request, TEMPLATE, context, images=images, cursor=cursor)


def grid_response(request, template, context, *, images, cursor):
    """A grid's whole page, or for HTMX its results (first page) or the next page."""
    if request.htmx and not request.htmx.history_restore_request:
        template += "#page" if cursor else "#results"
    if not cursor:
        context["total"] = images.count()
    response = render(request, template, context)
    # The same address answers with a page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def project_gallery(request, project_id):
    project = get_object_or_404(Project.objects.select_related("team"), pk=project_id)
    require(request.user, "view", project)
    context = {
        "title": f"{project.name} gallery",
        "kind": "project",
        "project": project,
        "team": project.team,
        "may_generate": can(request.user, "generate", project),
        "may_delete_images": can(request.user, "delete_images", project),
    }
    return gallery_response(request, browse.project_images(project), context)


@login_required
@require_GET
def team_gallery(request, team_id):
    team = require(request.user, "view", get_object_or_404(Team, pk=team_id))
    context = {"title": f"{team.name} gallery", "kind": "team", "team": team}
    return gallery_response(request, browse.team_images(team), context, projects=True)


@login_required
@require_GET
def my_images(request):
    context = {"title": "My images", "kind": "mine"}
    return gallery_response(
        request, browse.user_images(request.user), context, users=False, projects=True,
        narrow=True,
    )
