"""Where gallery work goes once committed: the CPU queue (studio.dispatch)."""

import threading

from django.conf import settings
from django.utils import timezone

from studio.dispatch import send


def enqueue_thumbnails(image_id):
    from gallery.tasks import make_thumbnails

    send(make_thumbnails, image_id, queue=settings.STUDIO_CPU_QUEUE)


# The embedded mode's purge timer: one per process, armed for the earliest undo window to
# end; the purge re-arms it for the next one (gallery.tasks.purge_deleted_images).
_purge_timer = None
_purge_lock = threading.Lock()


def schedule_purge(when):
    """Purge deleted images once `when` has passed. Embedded mode only: there the process
    runs the purge on its CPU thread; with a broker, operators schedule the
    `purge_deleted_images` command (or task) instead, so nothing is queued per deletion."""
    global _purge_timer
    if settings.CELERY_BROKER_URL or when is None:
        return
    with _purge_lock:
        if _purge_timer is not None and _purge_timer.when <= when:
            return  # an earlier purge is armed; it re-arms for this one
        if _purge_timer is not None:
            _purge_timer.cancel()
        delay = max((when - timezone.now()).total_seconds(), 0)
        _purge_timer = threading.Timer(delay, _submit_purge)
        _purge_timer.when = when
        _purge_timer.daemon = True
        _purge_timer.start()


def _submit_purge():
    global _purge_timer
    from gallery.tasks import purge_deleted_images

    with _purge_lock:
        _purge_timer = None
    send(purge_deleted_images, queue=settings.STUDIO_CPU_QUEUE)


def resume_purge():
    """Embedded mode, at start: purge what came due while the server was down, and arm
    the timer for the rest."""
    from gallery.tasks import purge_deleted_images

    send(purge_deleted_images, queue=settings.STUDIO_CPU_QUEUE)
