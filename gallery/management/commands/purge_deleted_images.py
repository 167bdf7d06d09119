"""Remove deleted images whose undo window has ended: their files, then their rows."""

from django.core.management.base import BaseCommand

from gallery.deletion.services import (
    collections_purge_due,
    images_purge_due,
    next_purge_at,
    undo_window_label,
)


class Command(BaseCommand):
    help = (
        "Purge deleted images past their undo window (STUDIO_DELETE_UNDO_SECONDS): the "
        "original and every thumbnail leave storage, then the row; deleted collections past "
        "it go too. Schedule it (cron, a "
        "systemd timer, a Kubernetes CronJob), e.g. hourly; running it again is harmless."
    )

    def handle(self, *args, **options):
        purged = images_purge_due()
        collections = collections_purge_due()
        self.stdout.write(
            self.style.SUCCESS(
                f"Purged {purged} image{'s' if purged != 1 else ''} and {collections} "
                f"collection{'s' if collections != 1 else ''} deleted more than "
                f"{undo_window_label()} ago."
            )
        )
        upcoming = next_purge_at()
        if upcoming is not None and options["verbosity"] > 1:
            self.stdout.write(f"The next one comes due at {upcoming:%Y-%m-%d %H:%M %Z}.")
