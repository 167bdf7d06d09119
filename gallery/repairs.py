"""The gallery's part of the sweeper's pass (generation.sweeper.REPAIRS): thumbnails whose
message was lost are sent again."""

from django.conf import settings
from django.utils import timezone

from gallery.dispatch import enqueue_thumbnails
from gallery.models import Image
from generation.sweeper import SIDE_EFFECT_GRACE, SIDE_EFFECT_RETRY_WINDOW, SIDE_EFFECTS_PER_PASS
from studio.dispatch import waiting


def recent_images():
    """Images old enough to have lost a message, young enough to be tried again."""
    now = timezone.now()
    return Image.objects.filter(
        created_at__lt=now - SIDE_EFFECT_GRACE,
        created_at__gt=now - SIDE_EFFECT_RETRY_WINDOW,
    ).order_by("created_at")


def thumbnails_resend() -> dict[str, int]:
    """Recent images without thumbnails, sent again while the CPU queue is empty (a backlog
    still holds them)."""
    if waiting(settings.STUDIO_CPU_QUEUE):
        return {}
    ids = list(recent_images().filter(thumbnails={}).values_list("pk", flat=True)
               [:SIDE_EFFECTS_PER_PASS])
    for image_id in ids:
        enqueue_thumbnails(image_id)
    return {"thumbnails_resent": len(ids)}
