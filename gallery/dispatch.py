"""Where gallery work goes once committed: the CPU Celery queue, or the in-process worker."""

from django.conf import settings


def enqueue_thumbnails(image_id):
    from gallery.tasks import make_thumbnails

    if settings.CELERY_BROKER_URL:
        make_thumbnails.apply_async(args=[image_id], queue=settings.STUDIO_CPU_QUEUE)
    else:
        from studio import embedded_worker

        embedded_worker.submit_cpu_task(make_thumbnails, image_id)
