"""Scan the images that have no moderation scan yet (made before scans existed, or whose
scan could not run): until then they can't be made public."""

from django.core.management.base import BaseCommand

from gallery.models import Image
from studio.moderation.dispatch import enqueue_scan
from studio.moderation.scanning import image_scan


class Command(BaseCommand):
    help = (
        "Scan gallery images that have no moderation scan, here (default) or on the "
        "moderation queue (--enqueue). Safe to run again: scanned images are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--enqueue", action="store_true",
            help="Send one task per image to the moderation Celery queue instead.",
        )

    def handle(self, *args, enqueue, **options):
        todo = list(
            Image.objects.filter(scan__isnull=True).order_by("pk").values_list("pk", flat=True)
        )
        done = 0
        for number, image_id in enumerate(todo, start=1):
            if enqueue:
                enqueue_scan(image_id)
                done += 1
            elif image_scan(image_id=image_id) is not None:
                done += 1
            if options["verbosity"] > 1 or number % 500 == 0:
                self.stdout.write(f"{number}/{len(todo)}")
        verb = "Queued" if enqueue else "Scanned"
        self.stdout.write(self.style.SUCCESS(f"{verb} {done} of {len(todo)} unscanned images."))
