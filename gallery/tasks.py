from celery import shared_task


@shared_task(name="gallery.tasks.make_thumbnails", acks_late=True)
def make_thumbnails(image_id):
    """WebP thumbnails of one image (CPU queue); running it again changes nothing."""
    from gallery.thumbnails import image_thumbnails_make

    image_thumbnails_make(image_id=image_id)
