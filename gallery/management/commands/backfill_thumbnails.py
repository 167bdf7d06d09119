"""Make the WebP thumbnails of images saved before thumbnails existed (or of new sizes)."""

from django.core.management.base import BaseCommand

from gallery.dispatch import enqueue_thumbnails
from gallery.models import Image
from gallery.thumbnails import image_thumbnails_make


class Command(BaseCommand):
    help = (
        "Make missing thumbnails of gallery images, here (default) or on the CPU queue "
        "(--enqueue). Safe to run again: images with all their thumbnails are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--enqueue", action="store_true",
            help="Send one task per image to the CPU Celery queue instead of working here.",
        )
        parser.add_argument(
            "--force", action="store_true", help="Remake every thumbnail, not only missing ones."
        )
        parser.add_argument("--project", type=int, help="Only this project's images (id).")

    def handle(self, *args, enqueue, force, project, **options):
        images = Image.objects.order_by("pk").only("pk", "thumbnails")
        if project is not None:
            images = images.filter(project_id=project)
        todo = [image.pk for image in images.iterator() if force or not image.has_thumbnails()]
        made = 0
        for number, image_id in enumerate(todo, start=1):
            if enqueue:
                enqueue_thumbnails(image_id)
                made += 1
            elif image_thumbnails_make(image_id=image_id, force=force):
                made += 1
            if options["verbosity"] > 1 or number % 500 == 0:
                self.stdout.write(f"{number}/{len(todo)}")
        verb = "Queued" if enqueue else "Made thumbnails for"
        self.stdout.write(self.style.SUCCESS(f"{verb} {made} of {len(todo)} images needing them."))
