"""Deleting images from the image page (one, or every image of its job), undoing it from
the toast that follows or from the project's "Recently deleted" page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from gallery.deletion import services as deletion
from gallery.models import THUMBNAIL_SIZES, Image
from gallery.views import thumbnail_response
from generation.models import GenerationJob
from studio.accounts.models import Project
from studio.permissions import require

RECENTLY_DELETED_LIMIT = 200


def undo_message(request, deletion_id, text):
    """A success message with an Undo button (a form: restoring is a POST)."""
    context = {
        "text": text,
        "deletion_id": deletion_id,
        "window": deletion.undo_window_label(),
    }
    messages.success(request, render_to_string("gallery/undo_toast.html", context, request))


@login_required
@require_POST
def image_delete(request, image_id):
    """Editors delete an image: gone at once, restorable for the undo window."""
    image = get_object_or_404(Image.objects.select_related("project__team"), pk=image_id)
    require(request.user, "delete_images", image.project)
    deletion_id = deletion.image_delete(image=image, user=request.user)
    undo_message(request, deletion_id, f"Image {image.pk} deleted.")
    return redirect("project_gallery", image.project_id)


@login_required
@require_POST
def job_images_delete(request, job_id):
    """Editors delete every image a job made, in one go (and undo them in one go)."""
    job = get_object_or_404(GenerationJob.objects.select_related("project__team"), pk=job_id)
    require(request.user, "delete_images", job.project)
    deletion_id, count = deletion.job_images_delete(job=job, user=request.user)
    if count:
        images = f"{count} image{'s' if count != 1 else ''}"
        undo_message(request, deletion_id, f"{images} of job #{job.pk} deleted.")
    else:
        messages.info(request, f"Job #{job.pk} has no images left to delete.")
    return redirect("project_gallery", job.project_id)


@login_required
@require_POST
def deletion_restore(request, deletion_id):
    """Undo a deletion while its window lasts; after that, say why it can't be undone."""
    first = deletion.deleted_images(deletion_id).select_related("project__team").first()
    if first is None:  # never existed, restored already, or purged
        raise Http404
    require(request.user, "delete_images", first.project)
    try:
        count = deletion.deletion_restore(deletion_id=deletion_id, user=request.user)
    except deletion.RestoreRefused as refused:
        messages.error(request, refused.message)
        return redirect("project_gallery", first.project_id)
    if count == 1:
        messages.success(request, "Restored: the image is back.")
        return redirect("image_detail", first.pk)
    messages.success(request, f"Restored: {count} images are back.")
    return redirect("project_gallery", first.project_id)


@login_required
@require_GET
def recently_deleted(request, project_id):
    """A project's deleted images still inside the undo window, grouped as they were
    deleted, each group with its Restore button. Its editors only."""
    project = get_object_or_404(Project.objects.select_related("team"), pk=project_id)
    require(request.user, "delete_images", project)
    images = (
        Image.all_objects.filter(
            project=project, deleted_at__gt=deletion.purge_cutoff(), deletion_id__isnull=False
        )
        .select_related("deleted_by")
        .order_by("-deleted_at", "-pk")[:RECENTLY_DELETED_LIMIT]
    )
    groups = {}
    for image in images:
        groups.setdefault(image.deletion_id, []).append(image)
    context = {
        "project": project,
        "team": project.team,
        "groups": [
            {"images": group, "first": group[0],
             "purge_at": group[0].deleted_at + deletion.undo_window()}
            for group in groups.values()
        ],
        "window": deletion.undo_window_label(),
    }
    return render(request, "gallery/recently_deleted.html", context)


@login_required
@require_GET
def deleted_image_thumbnail(request, image_id, size):
    """A deleted image's thumbnail, for the "Recently deleted" page: its project's editors
    only, and only while it can still be restored."""
    image = get_object_or_404(
        Image.all_objects.select_related("project__team"),
        pk=image_id,
        deleted_at__gt=deletion.purge_cutoff(),
    )
    require(request.user, "delete_images", image.project)
    name = image.thumbnail_name(size) if size in THUMBNAIL_SIZES else None
    if not name or not image.file.storage.exists(name):
        raise Http404  # never the original of a deleted image
    return thumbnail_response(image, size, image.file_url())
