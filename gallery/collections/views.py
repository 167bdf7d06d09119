"""Collections: the team's and a project's lists, a collection's page (also by its secret
link), and the changes its owner, contributors and the team's admins make.

Outsiders get a 404 for everything (anonymous users: the login page), members whose role
is too low a 403. A collection's page shows only the images the viewer may see."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from gallery import browse, publication
from gallery.collections.forms import CollectionForm
from gallery.collections.models import Collection, CollectionItem, CollectionVisibility
from gallery.collections.services import (
    CollectionRefused,
    collection_add_images,
    collection_create,
    collection_delete,
    collection_move_image,
    collection_place_image,
    collection_remove_image,
    collection_restore,
    collection_set_contributor,
    collection_set_cover,
    collection_update,
    may_create,
    parse_image_ids,
    publishing_message,
)
from gallery.deletion.services import undo_window_label
from gallery.models import Image, ModerationStatus, Visibility
from gallery.reactions.services import with_reactions
from studio.accounts.models import Project, Team
from studio.permissions import require
from studio.redirects import safe_next_url

LIST = "gallery/collections.html"
DETAIL = "gallery/collection.html"
UNDO = "gallery/collection_undo.html"
RELATED = ("team", "project", "created_by")


def select_context(user, team=None):
    """A grid's select mode: the collections the user may add the chosen images to (the
    team's, on a team's or project's grid)."""
    if not user.is_authenticated:
        return {}
    collections = Collection.objects.addable_by(user).select_related("team", "project")
    if team is not None:
        collections = collections.filter(team=team)
    return {
        "selectable": True,
        "select_collections": list(collections.order_by("team__name", "name", "pk")),
    }


# -- Lists --------------------------------------------------------------------------------


def collection_cards(collections, user):
    """The collections with, for `user`, how many of their images they see and a cover
    they may see (the chosen one, else the first): three queries for any number."""
    visible = Image.objects.visible_to(user)
    items = CollectionItem.objects.filter(collection=OuterRef("pk"), image__in=visible)
    counted = items.order_by().values("collection").annotate(n=Count("pk")).values("n")
    rows = list(
        collections.select_related(*RELATED).annotate(
            image_count=Coalesce(Subquery(counted, output_field=IntegerField()), Value(0)),
            cover_visible=Exists(visible.filter(pk=OuterRef("cover_id"))),
            first_image_id=Subquery(items.order_by("position", "pk").values("image")[:1]),
        )
    )
    covers = Image.objects.in_bulk(
        {row.cover_id if row.cover_visible else row.first_image_id for row in rows} - {None}
    )
    for row in rows:
        row.cover_image = covers.get(row.cover_id if row.cover_visible else row.first_image_id)
    return rows


def list_response(request, *, team, project=None, form=None, status=200):
    user = request.user
    collections = Collection.objects.visible_to(user).filter(team=team)
    if project is not None:
        collections = collections.filter(project=project)
    creatable = may_create(user, team)
    if creatable and form is None:
        form = CollectionForm(team=team, initial={"project": project})
    context = {
        "team": team,
        "project": project,
        "collections": collection_cards(collections.order_by("-updated_at", "-pk"), user),
        "form": form if creatable else None,
    }
    return render(request, LIST, context, status=status)


@login_required
@require_GET
def team_collections(request, team_id):
    team = require(request.user, "view", get_object_or_404(Team, pk=team_id))
    return list_response(request, team=team)


@login_required
@require_GET
def project_collections(request, project_id):
    project = get_object_or_404(Project.objects.select_related("team"), pk=project_id)
    require(request.user, "view", project)
    return list_response(request, team=project.team, project=project)


@login_required
@require_POST
def collection_new(request, team_id):
    team = require(request.user, "view", get_object_or_404(Team, pk=team_id))
    if not may_create(request.user, team):
        raise PermissionDenied("Only the team's editors may make collections.")
    form = CollectionForm(request.POST, team=team, user=request.user)
    if not form.is_valid():
        project = form.cleaned_data.get("project")
        return list_response(request, team=team, project=project, form=form, status=422)
    collection = collection_create(
        user=request.user, team=team, project=form.cleaned_data["project"],
        name=form.cleaned_data["name"], description=form.cleaned_data["description"],
        visibility=form.cleaned_data["visibility"],
    )
    messages.success(request, f"Collection “{collection.name}” made. Add images from any grid.")
    if waiting := publishing_message(collection):
        messages.info(request, waiting)
    return redirect(collection)


# -- One collection -------------------------------------------------------------------------


def viewable_collection(view):
    """Resolve `collection_id` to a collection the user may see, or answer for them: the
    login page for anonymous users (whether or not it exists), else 404."""

    @wraps(view)
    def wrapper(request, collection_id, *args, **kwargs):
        collection = Collection.objects.select_related(*RELATED).filter(pk=collection_id).first()
        if collection is None or not collection.may_view(request.user):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            raise Http404
        return view(request, collection, *args, **kwargs)

    return wrapper


def managed_collection(request, collection_id):
    """A collection the user may change: 404 unless they may see it, 403 below its owner
    or the team's admins."""
    collection = get_object_or_404(Collection.objects.select_related(*RELATED), pk=collection_id)
    if not collection.may_view(request.user):
        raise Http404
    if not collection.may_manage(request.user):
        raise PermissionDenied("Only its owner and the team's admins may change it.")
    return collection


def encode_cursor(image):
    return f"{image.item_position}.{image.item_id}"


def decode_cursor(text):
    position, _, item = (text or "").partition(".")
    if not (position.isdecimal() and item.isdecimal()) or len(position) > 18 or len(item) > 18:
        return None
    return int(position), int(item)


def collection_page(collection, user, cursor):
    images = collection.images_for(user).annotate(
        item_position=F("collection_items__position"), item_id=F("collection_items__id")
    )
    after = decode_cursor(cursor)
    if after is not None:
        position, item = after
        images = images.filter(
            Q(item_position__gt=position) | Q(item_position=position, item_id__gt=item)
        )
    size = browse.PAGE_SIZE
    rows = list(
        with_reactions(images, user)
        .select_related("project", "created_by")
        .order_by("item_position", "item_id")[: size + 1]
    )
    more = len(rows) > size
    rows = rows[:size]
    return browse.Page(images=rows, next_cursor=encode_cursor(rows[-1]) if more else None)


def detail_response(request, collection, *, shared=False, edit_form=None, status=200):
    user = request.user
    cursor = request.GET.get("cursor", "")
    if not decode_cursor(cursor):
        cursor = ""
    page = collection_page(collection, user, cursor)
    may_manage = not shared and collection.may_manage(user)
    context = {
        "collection": collection,
        "shared": shared,
        "page": page,
        "images": page.images,
        "reactions": True,
        "may_manage": may_manage,
        "may_add": not shared and collection.may_add(user),
        "is_member": collection.role_of(user) is not None,
    }
    template = DETAIL
    if request.htmx and cursor:
        template += "#page"
    else:
        context["total"] = collection.images_for(user).count()
        context["cover"] = collection_cards(Collection.objects.filter(pk=collection.pk), user)[
            0
        ].cover_image
        if may_manage:
            context.update(manage_context(collection, edit_form))
        if context["is_member"]:
            context["publish_request"] = publication.gate.pending(collection=collection)
        if context["is_member"] and collection.visibility in (
            CollectionVisibility.UNLISTED, CollectionVisibility.PUBLIC
        ):
            # Members see images that visitors don't: say how many visitors see.
            context["visitor_count"] = collection.items.filter(
                image__visibility=Visibility.PUBLIC,
                image__moderation_status=ModerationStatus.PASSED,
                image__deleted_at__isnull=True,
            ).count()
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def manage_context(collection, form=None):
    members = (
        get_user_model()
        .objects.filter(memberships__team=collection.team)
        .order_by("username")
    )
    contributors = list(collection.contributors.order_by("username"))
    return {
        "edit_form": form or CollectionForm(instance=collection),
        "contributors": contributors,
        "contributor_choices": [
            member for member in members
            if member not in contributors and member.pk != collection.created_by_id
        ],
    }


@require_GET
@viewable_collection
def collection_detail(request, collection):
    return detail_response(request, collection)


@require_GET
def collection_shared(request, token):
    """A collection by its secret link: anyone who has it, while it is shared so. It
    shows only the images the visitor may see by themselves (public ones, for most)."""
    collection = get_object_or_404(Collection.objects.select_related(*RELATED), share_token=token)
    if not collection.shared_by_link():
        raise Http404
    return detail_response(request, collection, shared=True)


# -- Changes --------------------------------------------------------------------------------


def back_to(collection):
    return redirect(collection.get_absolute_url())


@login_required
@require_POST
def collection_edit(request, collection_id):
    collection = managed_collection(request, collection_id)
    form = CollectionForm(request.POST, instance=collection, user=request.user)
    if not form.is_valid():
        collection.refresh_from_db()  # the form changed the instance's fields
        return detail_response(request, collection, edit_form=form, status=422)
    collection_update(
        collection=collection, user=request.user, name=form.cleaned_data["name"],
        description=form.cleaned_data["description"],
        visibility=form.cleaned_data["visibility"],
    )
    messages.success(request, f"Collection saved. {publishing_message(collection)}".strip())
    return back_to(collection)


@login_required
@require_POST
def collection_remove(request, collection_id):
    collection = managed_collection(request, collection_id)
    team = collection.team
    collection_delete(collection=collection, user=request.user)
    context = {"collection": collection, "window": undo_window_label()}
    messages.success(request, render_to_string(UNDO, context, request))
    return redirect("team_collections", team.pk)


@login_required
@require_POST
def collection_undo(request, collection_id):
    """Undo a deletion while the undo window lasts: 404 unless the user may see it (as
    it was), 403 below its owner or the team's admins."""
    collection = get_object_or_404(
        Collection.all_objects.select_related(*RELATED), pk=collection_id
    )
    if not collection.may_view(request.user):
        raise Http404
    try:
        collection_restore(collection=collection, user=request.user)
    except CollectionRefused as refused:
        messages.error(request, refused.message)
        return redirect("team_collections", collection.team_id)
    messages.success(request, f"Collection “{collection.name}” restored.")
    return back_to(collection)


def image_in(collection, image_id):
    return get_object_or_404(Image, pk=image_id, collection_items__collection=collection)


@login_required
@require_POST
def collection_image_remove(request, collection_id, image_id):
    collection = managed_collection(request, collection_id)
    collection_remove_image(
        collection=collection, user=request.user, image=image_in(collection, image_id)
    )
    if request.htmx:
        return HttpResponse("")  # the card goes
    messages.success(request, "Image removed from the collection.")
    return back_to(collection)


@login_required
@require_POST
def collection_image_move(request, collection_id, image_id):
    collection = managed_collection(request, collection_id)
    try:
        collection_move_image(
            collection=collection, user=request.user, image=image_in(collection, image_id),
            direction=request.POST.get("direction", ""),
        )
    except CollectionRefused as refused:
        return HttpResponse(refused.message, status=400)
    if request.htmx:
        return HttpResponse(status=204)  # collections.js moves the card
    return back_to(collection)


@login_required
@require_POST
def collection_image_place(request, collection_id, image_id):
    """A dragged card dropped before or after another: 204 for the page's script."""
    collection = managed_collection(request, collection_id)
    image = image_in(collection, image_id)
    target_id = request.POST.get("target", "")
    target = (
        Image.objects.filter(pk=target_id, collection_items__collection=collection).first()
        if target_id.isdecimal() and len(target_id) <= 18 else None
    )
    try:
        collection_place_image(
            collection=collection, user=request.user, image=image, target=target,
            side=request.POST.get("side", ""),
        )
    except CollectionRefused as refused:
        return HttpResponse(refused.message, status=400)
    if request.htmx:
        return HttpResponse(status=204)
    return back_to(collection)


@login_required
@require_POST
def collection_cover(request, collection_id):
    collection = managed_collection(request, collection_id)
    value = request.POST.get("image", "")
    image = None
    if value:
        if not value.isdecimal() or len(value) > 18:
            raise Http404
        image = image_in(collection, value)
    try:
        collection_set_cover(collection=collection, user=request.user, image=image)
    except CollectionRefused as refused:
        messages.error(request, refused.message)
        return back_to(collection)
    messages.success(request, "Cover chosen." if image else "Cover: its first image.")
    return back_to(collection)


@login_required
@require_POST
def collection_contributor(request, collection_id):
    collection = managed_collection(request, collection_id)
    value = request.POST.get("user", "")
    contributor = (
        get_user_model().objects.filter(pk=value).first()
        if value.isdecimal() and len(value) <= 18 else None
    )
    try:
        if contributor is None:
            raise CollectionRefused("Contributor: choose a member of the team.")
        collection_set_contributor(
            collection=collection, user=request.user, contributor=contributor,
            add=request.POST.get("action") != "remove",
        )
    except CollectionRefused as refused:
        messages.error(request, refused.message)
    return back_to(collection)


def next_url(request, fallback):
    return safe_next_url(request, request.POST.get("next"), fallback=fallback)


@login_required
@require_POST
def collection_add(request):
    """Add the chosen images (`image`, one or many) to the chosen `collection`: every one
    must be an image the user may see, or none is added."""
    value = request.POST.get("collection", "")
    collection = None
    if value.isdecimal() and len(value) <= 18:
        collection = Collection.objects.select_related(*RELATED).filter(pk=value).first()
    status, error, added = 200, "", 0
    try:
        if collection is None or not collection.may_view(request.user):
            raise CollectionRefused("Collection: choose one of your collections.")
        if not collection.may_add(request.user):
            raise PermissionDenied("Only its owner, contributors and the team's admins may add.")
        added = collection_add_images(
            collection=collection, user=request.user,
            image_ids=parse_image_ids(request.POST.getlist("image")),
        )
    except CollectionRefused as refused:
        status, error = 422, refused.message
    if not request.htmx:
        if error:
            messages.error(request, error)
            return redirect(next_url(request, "/"))
        messages.success(request, added_message(collection, added))
        return redirect(next_url(request, collection.get_absolute_url()))
    message = "" if error else added_message(collection, added)
    context = {"collection": collection, "error": error, "message": message}
    return render(request, "gallery/collection_select.html#added", context, status=status)


def added_message(collection, added):
    if not added:
        return f"Already in “{collection.name}”."
    return f"{added} image{'s' if added != 1 else ''} added to “{collection.name}”."
