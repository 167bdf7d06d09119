"""Where moderation work goes once committed: the `moderation` Celery queue, or the
embedded mode's CPU thread."""

from django.conf import settings


def enqueue_scan(image_id):
    from studio.moderation.tasks import scan_image

    if settings.CELERY_BROKER_URL:
        scan_image.apply_async(args=[image_id], queue=settings.STUDIO_MODERATION_QUEUE)
    else:
        from studio import embedded_worker

        embedded_worker.submit_cpu_task(scan_image, image_id)
