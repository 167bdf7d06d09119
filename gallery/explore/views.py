"""The Explore page: everyone's public images, for everyone, signed in or not."""

from django.views.decorators.http import require_GET

from gallery import browse
from gallery.browse_views import grid_response
from gallery.collections.views import select_context
from gallery.explore import services as explore
from gallery.reactions.services import favourites_of

TEMPLATE = "gallery/explore.html"


@require_GET
def explore_page(request):
    """The whole page, or for HTMX the results (filters changed) or the next page."""
    scope = explore.explore_images()
    form = explore.ExploreFilterForm(request.GET, choices=explore.filter_choices(scope))
    if not request.user.is_authenticated:
        del form.fields["favourites"]  # nobody's favourites: they are signed out
    filters = form.filters()
    sort = form.sort_order()
    images = explore.filter_explore(scope, filters)
    if filters.get("favourites"):
        images = favourites_of(images, request.user)
    cursor = request.GET.get("cursor", "")
    if not browse.decode_sorted_cursor(cursor, sort):
        cursor = ""  # not one of ours (or of another order): start at the top
    page = explore.explore_page(images, user=request.user, sort=sort, cursor=cursor)
    context = {
        "form": form,
        "filtered": any(name != "sort" for name in filters),
        "page": page,
        "images": page.images,
        "reactions": True,
        "show_remixes": True,
        "sort": sort,
        **select_context(request.user),
    }
    return grid_response(request, TEMPLATE, context, images=images, cursor=cursor)
