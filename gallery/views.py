from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from gallery.models import THUMBNAIL_SIZES, Image
from studio.permissions import can, require


def image_for(user, image_id):
    image = get_object_or_404(
        Image.objects.select_related("project__team", "created_by", "job__model"), pk=image_id
    )
    require(user, "view", image.project)
    return image


@login_required
@require_GET
def image_detail(request, image_id):
    image = image_for(request.user, image_id)
    context = {"image": image, "may_generate": can(request.user, "generate", image.project)}
    return render(request, "gallery/image_detail.html", context)


@login_required
@require_GET
def image_card(request, image_id):
    image = image_for(request.user, image_id)
    return render(request, "gallery/image_detail.html#thumb", {"image": image, "is_new": True})


@login_required
@require_GET
def image_file(request, image_id):
    """The original PNG, only to people who may see its project."""
    image = image_for(request.user, image_id)
    response = FileResponse(image.file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="image-{image.pk}.png"'
    return response


@login_required
@require_GET
def image_thumbnail(request, image_id, size):
    """A WebP thumbnail, to the same people as the original; the original until it is made."""
    image = image_for(request.user, image_id)
    if size not in THUMBNAIL_SIZES:
        raise Http404
    name = image.thumbnail_name(size)
    try:
        handle = image.file.storage.open(name, "rb") if name else None
    except FileNotFoundError:
        handle = None
    if handle is None:
        response = HttpResponseRedirect(image.file_url())
        response["Cache-Control"] = "private, no-cache"
        return response
    response = FileResponse(handle, content_type="image/webp")
    response["Cache-Control"] = "private, max-age=86400"
    return response
