"""Remove temporary files left by killed processes; list (or delete) files no row references."""

from django.core.files.storage import FileSystemStorage, default_storage
from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from gallery.orphans import ORPHAN_MIN_AGE, orphan_files_find


class Command(BaseCommand):
    help = (
        "On the filesystem storage (MEDIA_ROOT): remove temporary files older than an hour "
        "that a killed process left mid-write, and list media files older than an hour that "
        "no row references; --delete removes those too. Cheap (one walk of MEDIA_ROOT, one "
        "query per file field); schedule it daily, or run it after a crash."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--delete", action="store_true", help="Also delete the files no row references."
        )

    def handle(self, *args, **options):
        if not isinstance(default_storage, FileSystemStorage):
            raise CommandError(
                "purge_orphan_files works on the filesystem storage (MEDIA_ROOT); media is in "
                f"{type(default_storage).__name__} (STORAGE_BACKEND)."
            )
        found = orphan_files_find(root=default_storage.location, older_than=ORPHAN_MIN_AGE)
        for name in found.temporary:
            default_storage.delete(name)
        self.stdout.write(f"Removed {len(found.temporary)} temporary file(s) left mid-write.")
        for name, size in found.unreferenced:
            self.stdout.write(f"{name}\t{filesizeformat(size)}")
            if options["delete"]:
                default_storage.delete(name)
        total = filesizeformat(sum(size for _, size in found.unreferenced))
        if not found.unreferenced:
            self.stdout.write(self.style.SUCCESS("No file is left without its row."))
        elif options["delete"]:
            self.stdout.write(self.style.SUCCESS(
                f"Deleted {len(found.unreferenced)} file(s) no row references ({total})."
            ))
        else:
            self.stdout.write(self.style.WARNING(
                f"{len(found.unreferenced)} file(s) no row references ({total}); run with "
                "--delete to remove them."
            ))
