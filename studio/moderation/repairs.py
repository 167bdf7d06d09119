"""Moderation's part of the sweeper's pass (generation.sweeper.REPAIRS): scans whose
message was lost are sent again."""

from django.conf import settings

from gallery.repairs import recent_images
from generation.sweeper import SIDE_EFFECTS_PER_PASS
from studio.dispatch import waiting
from studio.moderation.dispatch import enqueue_scan


def scans_resend() -> dict[str, int]:
    """Recent images without a scan, sent again while the moderation queue is empty."""
    if waiting(settings.STUDIO_MODERATION_QUEUE):
        return {}
    ids = list(recent_images().filter(scan__isnull=True).values_list("pk", flat=True)
               [:SIDE_EFFECTS_PER_PASS])
    for image_id in ids:
        enqueue_scan(image_id)
    return {"scans_resent": len(ids)}
