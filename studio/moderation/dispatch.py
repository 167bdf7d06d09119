"""Where moderation work goes once committed: the `moderation` queue (studio.dispatch)."""

from django.conf import settings

from studio.dispatch import send


def enqueue_scan(image_id):
    from studio.moderation.tasks import scan_image

    send(scan_image, image_id, queue=settings.STUDIO_MODERATION_QUEUE)
