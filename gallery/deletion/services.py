"""Deleting images: soft delete, undo, purge.

A deleted image leaves every page, grid, fragment, media URL and query at once: the default
manager (Image.objects) leaves it out. Its editors may restore it until the undo window
(STUDIO_DELETE_UNDO_SECONDS) ends; after that a purge removes its original and thumbnails
from storage, then its row, so nothing references a purged file (jobs that used it as a
source keep a NULL there, and their images' lineage says "deleted").

The purge is `manage.py purge_deleted_images`, which operators schedule (cron, a systemd
timer, a Kubernetes CronJob); in the embedded mode the process runs it on its CPU thread
once each undo window ends (gallery.dispatch.schedule_purge). It also removes collections
deleted before the window.
"""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from gallery.collections.models import Collection
from gallery.dispatch import schedule_purge
from gallery.models import Image
from gallery.services import image_thumbnails_schedule
from studio.permissions import can

logger = logging.getLogger(__name__)

# How soon the embedded mode's purge tries again an image whose files it could not remove.
PURGE_RETRY = timedelta(minutes=5)


class RestoreRefused(ValidationError):
    """The deletion can't be undone any more; the message says why."""


def undo_window():
    return timedelta(seconds=settings.STUDIO_DELETE_UNDO_SECONDS)


def undo_window_label():
    """The undo window in words: "1 day", "2 hours", "90 seconds"."""
    seconds = settings.STUDIO_DELETE_UNDO_SECONDS
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def purge_cutoff(now=None):
    """Images deleted at or before this moment are past undo: the purge takes them."""
    return (now or timezone.now()) - undo_window()


def _soft_delete(images, *, user):
    """Mark `images` (live images of one project) deleted together: (deletion id, count)."""
    deletion_id = uuid.uuid4()
    now = timezone.now()
    count = images.update(deleted_at=now, deleted_by=user, deletion_id=deletion_id)
    if count:
        transaction.on_commit(lambda: schedule_purge(now + undo_window()))
    return deletion_id, count


def _require_delete(user, project):
    if not can(user, "delete_images", project):
        raise PermissionDenied("Only the project's editors may delete its images.")


def image_delete(*, image, user):
    """Soft-delete one image; its deletion id (for undo)."""
    _require_delete(user, image.project)
    deletion_id, _ = _soft_delete(Image.objects.filter(pk=image.pk), user=user)
    return deletion_id


def job_images_delete(*, job, user):
    """Soft-delete every image of a job at once; (deletion id, how many)."""
    _require_delete(user, job.project)
    return _soft_delete(Image.objects.filter(job=job), user=user)


def deleted_images(deletion_id):
    """The images of a deletion not purged yet (empty once restored or purged)."""
    return Image.all_objects.filter(deletion_id=deletion_id, deleted_at__isnull=False)


def deletion_restore(*, deletion_id, user):
    """Bring back the images deleted together, while the undo window lasts; their count.

    The restore and the purge both judge "inside the window" against the clock under a
    conditional update, so an image is either restored or purged, never half of each."""
    images = deleted_images(deletion_id)
    first = images.select_related("project__team").first()
    if first is None:
        raise Image.DoesNotExist
    _require_delete(user, first.project)
    restorable = images.filter(deleted_at__gt=purge_cutoff())
    restored = list(restorable.only("pk", "thumbnails"))
    count = restorable.update(deleted_at=None, deleted_by=None, deletion_id=None)
    if not count:
        deleted_at = timezone.localtime(first.deleted_at)
        raise RestoreRefused(
            f"Too late to undo: deleted images can be restored for {undo_window_label()}, "
            f"and these were deleted on {deleted_at:%Y-%m-%d} at {deleted_at:%H:%M}. "
            "They are being removed for good."
        )
    for image in restored:
        if not image.has_thumbnails():  # their thumbnail task skipped them while deleted
            image_thumbnails_schedule(image=image)
    return count


# -- Purge --------------------------------------------------------------------------------


def image_files(image):
    """Every storage name the image's row references: the original and its thumbnails."""
    names = [image.file.name] if image.file else []
    return names + [name for name in (image.thumbnails or {}).values() if name]


def image_purge(*, image_id, cutoff):
    """Remove a deleted image past undo: its files, then its row. True if it purged it.

    Files go first, under the row's lock: if a delete fails the row stays (deleted, so
    nothing shows it) and the next purge tries again; a missing file counts as removed."""
    with transaction.atomic():
        image = (
            Image.all_objects.select_for_update()
            .filter(pk=image_id, deleted_at__isnull=False, deleted_at__lte=cutoff)
            .first()
        )
        if image is None:  # restored, purged by another run, or not due yet
            return False
        for name in image_files(image):
            image.file.storage.delete(name)  # thumbnails live in the same storage
        image.delete()
    return True


def images_purge_due(*, now=None):
    """Purge every deleted image whose undo window has ended; how many. Idempotent."""
    cutoff = purge_cutoff(now)
    due = Image.all_objects.filter(deleted_at__isnull=False, deleted_at__lte=cutoff)
    purged = 0
    for image_id in due.order_by("deleted_at", "pk").values_list("pk", flat=True).iterator():
        try:
            purged += image_purge(image_id=image_id, cutoff=cutoff)
        except OSError:
            logger.exception("Image %s: its files could not be removed; kept for the next purge",
                             image_id)
    return purged


def collections_purge_due(*, now=None):
    """Remove collections deleted before the undo window (gallery.collections.services deletes them
    softly; they hold no files, their images stay); how many."""
    _, removed = Collection.all_objects.filter(
        deleted_at__isnull=False, deleted_at__lte=purge_cutoff(now)
    ).delete()
    return removed.get(Collection._meta.label, 0)


def next_purge_at():
    """When the oldest deleted image's undo window ends, or None when none is deleted."""
    oldest = (
        Image.all_objects.filter(deleted_at__isnull=False)
        .order_by("deleted_at")
        .values_list("deleted_at", flat=True)
        .first()
    )
    return oldest + undo_window() if oldest else None


def deletion_offer(*, user, image):
    """What the image page offers `user` to delete: nothing, or the image and (when its
    job made several) every image of its job."""
    if not (user.is_authenticated and can(user, "delete_images", image.project)):
        return {"may_delete": False}
    job_image_count = Image.objects.filter(job_id=image.job_id).count() if image.job_id else 1
    return {
        "may_delete": True,
        "job_image_count": job_image_count,
        "undo_window": undo_window_label(),
    }
