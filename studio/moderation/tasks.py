from celery import shared_task


@shared_task(name="studio.moderation.tasks.scan_image", acks_late=True)
def scan_image(image_id):
    """Hash and classify one image (`moderation` queue); running it again changes nothing."""
    from studio.moderation.scanning import image_scan

    image_scan(image_id=image_id)
