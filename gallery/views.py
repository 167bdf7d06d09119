from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from gallery.detail import image_lineage, png_without_metadata, remix_projects
from gallery.models import THUMBNAIL_SIZES, Image
from studio.accounts.models import Project
from studio.permissions import can, require


def image_for(user, image_id):
    image = get_object_or_404(
        Image.objects.select_related(
            "project__team", "created_by", "job__model", "job__source_image__project__team"
        ),
        pk=image_id,
    )
    require(user, "view", image.project)
    return image


@login_required
@require_GET
def image_detail(request, image_id):
    """The image, every parameter of its job, its lineage, and what can be done with it."""
    image = image_for(request.user, image_id)
    may_generate = can(request.user, "generate", image.project)
    projects = list(remix_projects(request.user)) if image.job_id else []
    context = {
        "image": image,
        "job": image.job,
        "may_generate": may_generate,
        "remix_projects": projects,
        "remix_default": image.project if may_generate else (projects[0] if projects else None),
        **image_lineage(user=request.user, image=image),
    }
    return render(request, "gallery/image_detail.html", context)


@login_required
@require_GET
def image_remix(request, image_id):
    """The studio of a project the user may generate in (the image's own unless another is
    chosen), its form filled with every parameter of the image's job and the image's seed."""
    image = image_for(request.user, image_id)
    if image.job_id is None:
        raise Http404("This image's job is gone: there is nothing to remix.")
    project_id = request.GET.get("project", "")
    if project_id:
        if not project_id.isdigit():
            raise Http404
        target = get_object_or_404(Project.objects.select_related("team"), pk=project_id)
    else:
        target = image.project
    require(request.user, "generate", target)
    studio = reverse("project_studio", args=[target.pk])
    return redirect(f"{studio}?duplicate={image.job_id}&image={image.pk}")


@login_required
@require_GET
def image_download_clean(request, image_id):
    """A copy of the image rebuilt from its pixels: no parameters or other metadata."""
    image = image_for(request.user, image_id)
    response = HttpResponse(png_without_metadata(image), content_type="image/png")
    response["Content-Disposition"] = f'attachment; filename="image-{image.pk}-clean.png"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


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
