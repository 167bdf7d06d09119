from celery import shared_task


@shared_task(name="gallery.tasks.make_thumbnails", acks_late=True)
def make_thumbnails(image_id):
    """WebP thumbnails of one image (CPU queue); running it again changes nothing."""
    from gallery.thumbnails import image_thumbnails_make

    image_thumbnails_make(image_id=image_id)


@shared_task(name="gallery.tasks.purge_deleted_images", acks_late=True)
def purge_deleted_images():
    """Remove deleted images past their undo window, files first (CPU queue); idempotent.
    In the embedded mode it then arms the timer for the next window to end."""
    from django.utils import timezone

    from gallery.deletion.services import (
        PURGE_RETRY,
        collections_purge_due,
        images_purge_due,
        next_purge_at,
    )
    from gallery.dispatch import schedule_purge

    purged = images_purge_due()
    collections_purge_due()
    upcoming = next_purge_at()
    if upcoming is not None:
        # An image whose files could not be removed is tried again later, not in a loop.
        schedule_purge(max(upcoming, timezone.now() + PURGE_RETRY))
    return purged
