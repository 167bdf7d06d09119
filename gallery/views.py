"""One image: its page, fragment, files and downloads, to whoever may see it (its project's
members, its team's when team-visible, anyone once public), or through its secret link
while it is shared by link. Everyone else gets a 404 (anonymous users: the login page)."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from gallery import publication
from gallery.deletion.services import deletion_offer
from gallery.detail import (
    png_without_metadata,
    remix_default_project,
    remix_projects,
)
from gallery.lineage import image_lineage
from gallery.models import THUMBNAIL_SIZES, Image, Visibility
from gallery.reactions.services import image_panel
from gallery.review.services import review_context
from gallery.sharing import (
    VisibilityRefused,
    image_set_visibility,
    image_share_link_reset,
    image_share_recipe_set,
    public_refusal,
    visibility_message,
)
from studio.accounts.models import Project
from studio.permissions import can, require

DETAIL = "gallery/image_detail.html"
RELATED = (
    "project__team", "created_by", "reviewed_by", "job__model", "job__source_image__project__team"
)


def viewable_image(view):
    """Resolve `image_id` to an image the user may see, or answer for them: the login
    page for anonymous users (whether or not it exists), else 404."""

    @wraps(view)
    def wrapper(request, image_id, *args, **kwargs):
        image = Image.objects.select_related(*RELATED).filter(pk=image_id).first()
        if image is None or not image.may_view(request.user):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            raise Http404
        return view(request, image, *args, **kwargs)

    return wrapper


def shared_image(view):
    """Resolve a secret link's token to its image while it is shared by link, else 404."""

    @wraps(view)
    def wrapper(request, token, *args, **kwargs):
        image = get_object_or_404(Image.objects.select_related(*RELATED), share_token=token)
        if not image.shared_by_link():
            raise Http404
        return view(request, image, *args, **kwargs)

    return wrapper


def editable_image(request, image_id):
    """An image whose visibility the user may set: 404 unless a member, 403 below editor."""
    image = get_object_or_404(Image.objects.select_related(*RELATED), pk=image_id)
    require(request.user, "generate", image.project)
    return image


# -- Responses shared by the member URLs and the secret-link URLs -------------------------


def file_response(image, *, download=False):
    response = FileResponse(image.file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    if download:
        response["Content-Disposition"] = f'attachment; filename="image-{image.pk}.png"'
    return response


def thumbnail_response(image, size, original_url):
    if size not in THUMBNAIL_SIZES:
        raise Http404
    name = image.thumbnail_name(size)
    try:
        handle = image.file.storage.open(name, "rb") if name else None
    except FileNotFoundError:
        handle = None
    if handle is None:  # not made yet: the original meanwhile
        response = HttpResponseRedirect(original_url)
        response["Cache-Control"] = "private, no-cache"
        return response
    response = FileResponse(handle, content_type="image/webp")
    response["Cache-Control"] = "private, max-age=86400"
    return response


def clean_response(image):
    response = HttpResponse(png_without_metadata(image), content_type="image/png")
    response["Content-Disposition"] = f'attachment; filename="image-{image.pk}-clean.png"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


def member_urls(image):
    return {
        "file": image.file_url(),
        "download": image.download_url(),
        "clean": image.clean_download_url(),
        "thumb": image.thumb_url,
    }


def shared_urls(image):
    token = image.share_token
    thumb = reverse("image_shared_thumbnail", args=[token, THUMBNAIL_SIZES[0]])
    return {
        "file": reverse("image_shared_file", args=[token]),
        "download": reverse("image_shared_file", args=[token]) + "?download=1",
        "clean": reverse("image_shared_clean", args=[token]),
        "thumb": thumb if image.has_thumbnails() else reverse("image_shared_file", args=[token]),
    }


def shared_file_response(image, *, download=False):
    """The original through its link: with its embedded parameters only where the link
    shows the recipe, else rebuilt from its pixels."""
    if image.link_shows_recipe():
        return file_response(image, download=download)
    response = HttpResponse(png_without_metadata(image), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    if download:
        response["Content-Disposition"] = f'attachment; filename="image-{image.pk}.png"'
    return response


def sharing_context(request, image, error=""):
    """The "Who can see it" panel: the image's project members see it, editors change it."""
    user = request.user
    return {
        "may_share": user.is_authenticated and can(user, "generate", image.project),
        "visibility_choices": Visibility.choices,
        "public_refusal": public_refusal(image),
        "publish_request": publication.gate.pending(image=image),
        "public_needs_approval": publication.gate.needs_approval(),
        "sharing_error": error,
        "share_absolute_url": request.build_absolute_uri(image.share_url())
        if image.share_token
        else "",
    }


def detail_context(request, image, *, shared=False):
    user = request.user
    is_member = user.is_authenticated and can(user, "view", image.project)
    may_generate = is_member and can(user, "generate", image.project)
    # Who may see the image may remix it (not through an unlisted link: generation.remix).
    may_remix = image.job_id is not None and image.may_view(user)
    projects = list(remix_projects(user)) if may_remix else []
    return {
        "image": image,
        "job": image.job,
        "shared": shared,
        # Through a link that shows the picture only: no prompt, parameters or recipe.
        "recipe_hidden": shared and not image.link_shows_recipe(),
        "is_member": is_member,
        "urls": shared_urls(image) if shared else member_urls(image),
        "may_generate": may_generate,
        "remix_projects": projects,
        "remix_default": remix_default_project(user, image, projects),
        "lineage": image_lineage(user=user, image=image),
        **sharing_context(request, image),
        **image_panel(image, user),
        **(review_context(user=user, image=image) if is_member else {}),
        **deletion_offer(user=user, image=image),
    }


# -- Member (and public) URLs -------------------------------------------------------------


@require_GET
@viewable_image
def image_detail(request, image):
    """The image, every parameter of its job, its lineage, and what can be done with it."""
    return render(request, DETAIL, detail_context(request, image))


@require_GET
@viewable_image
def image_card(request, image):
    # The team's review badge for its members only: the card opens for anyone who may see it.
    show_review = can(request.user, "view", image.project)
    return render(request, f"{DETAIL}#thumb", {"image": image, "is_new": True,
                                               "show_review": show_review})


@require_GET
@viewable_image
def image_file(request, image):
    """The original PNG, with its parameters."""
    return file_response(image, download=bool(request.GET.get("download")))


@require_GET
@viewable_image
def image_thumbnail(request, image, size):
    """A WebP thumbnail, to the same people as the original; the original until it is made."""
    return thumbnail_response(image, size, image.file_url())


@require_GET
@viewable_image
def image_download_clean(request, image):
    """A copy of the image rebuilt from its pixels: no parameters or other metadata."""
    return clean_response(image)


@login_required
@require_GET
@viewable_image
def image_remix(request, image):
    """The studio of a project the user may generate in (the chosen one, else
    remix_default_project), its form filled from the image (generation.remix). Anyone who
    may see the image may remix it: a public one too, into their own team's project."""
    if image.job_id is None:
        raise Http404("This image's job is gone: there is nothing to remix.")
    project_id = request.GET.get("project", "")
    if project_id:
        if not project_id.isdecimal() or len(project_id) > 18:
            raise Http404
        target = get_object_or_404(Project.objects.select_related("team"), pk=project_id)
        require(request.user, "generate", target)
    else:
        target = remix_default_project(request.user, image, remix_projects(request.user))
        if target is None:
            raise PermissionDenied("You may not generate in any project, so you can't remix.")
    studio = reverse("project_studio", args=[target.pk])
    return redirect(f"{studio}?remix={image.pk}")


# -- Visibility ---------------------------------------------------------------------------


def sharing_response(request, image, *, error="", status=200):
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(image)
    context = {"image": image, **sharing_context(request, image, error)}
    return render(request, f"{DETAIL}#sharing", context, status=status)


@login_required
@require_POST
def image_visibility(request, image_id):
    """Editors set who may see the image; public is refused until a moderation scan passed."""
    image = editable_image(request, image_id)
    try:
        image_set_visibility(
            image=image, user=request.user, visibility=request.POST.get("visibility", "")
        )
    except VisibilityRefused as refused:
        image.refresh_from_db(fields=["visibility", "share_token"])
        return sharing_response(request, image, error=refused.message, status=422)
    if not request.htmx:
        messages.success(request, visibility_message(image))
    return sharing_response(request, image)


@login_required
@require_POST
def image_share_reset(request, image_id):
    """A new secret link; the old one stops working."""
    image = editable_image(request, image_id)
    if not image.share_token:
        raise PermissionDenied("This image has no link yet.")
    image_share_link_reset(image=image, user=request.user)
    if not request.htmx:
        messages.success(request, "New link made: the old one no longer opens the image.")
    return sharing_response(request, image)


@login_required
@require_POST
def image_share_recipe(request, image_id):
    """Editors choose whether the secret link shows the prompt and parameters too."""
    image = editable_image(request, image_id)
    image_share_recipe_set(
        image=image, user=request.user, share_recipe=request.POST.get("share_recipe") == "on"
    )
    if not request.htmx:
        messages.success(request, "The link shows its prompt and parameters." if
                         image.share_recipe else "The link shows the picture only.")
    return sharing_response(request, image)


# -- Secret-link URLs (anyone with the link, signed in or not) ---------------------------


@require_GET
@shared_image
def image_shared(request, image):
    return render(request, DETAIL, detail_context(request, image, shared=True))


@require_GET
@shared_image
def image_shared_file(request, image):
    return shared_file_response(image, download=bool(request.GET.get("download")))


@require_GET
@shared_image
def image_shared_thumbnail(request, image, size):
    return thumbnail_response(image, size, reverse("image_shared_file", args=[image.share_token]))


@require_GET
@shared_image
def image_shared_clean(request, image):
    return clean_response(image)
