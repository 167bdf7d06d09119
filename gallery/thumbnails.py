"""WebP thumbnails of gallery images, made on the CPU queue (gallery.tasks)."""

import io
import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image as PILImage

from gallery.models import THUMBNAIL_SIZES, Image, thumbnail_path
from studio.storage import files_delete_on_rollback

logger = logging.getLogger(__name__)

WEBP_QUALITY = 82


def render_thumbnail(picture, size):
    """WebP bytes of `picture` scaled to `size` px on its long side (never enlarged)."""
    copy = picture.copy()
    copy.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    # Pixels only: no EXIF, ICC or text carried over from the original.
    copy.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()


def open_original(image):
    with image.file.open("rb") as handle:
        picture = PILImage.open(handle)
        picture.load()
    return picture.convert("RGBA" if "A" in picture.getbands() else "RGB")


def image_thumbnails_make(*, image_id, force=False):
    """Make the image's missing thumbnails (all of them with `force`); True if it made any.

    Idempotent: a finished image is left alone, a deleted one is skipped, and when two
    runs race the second one's files are removed rather than recorded."""
    image = Image.objects.filter(pk=image_id).only("pk", "project_id", "file", "thumbnails").first()
    if image is None:
        return False
    missing = THUMBNAIL_SIZES if force else [
        size for size in THUMBNAIL_SIZES if not image.thumbnail_name(size)
    ]
    if not missing:
        return False
    try:
        picture = open_original(image)
    except (OSError, ValueError):
        logger.exception("Image %s: the original could not be read; no thumbnails", image_id)
        return False
    made = {}
    # Should a later size or recording them fail, none of the new files stays behind.
    with files_delete_on_rollback(default_storage) as written:
        for size in missing:
            made[str(size)] = default_storage.save(
                thumbnail_path(image, size), ContentFile(render_thumbnail(picture, size))
            )
            written.append(made[str(size)])
        with transaction.atomic():
            locked = Image.objects.select_for_update().filter(pk=image_id).first()
            current = dict(locked.thumbnails or {}) if locked else None
            if locked is None or (not force and all(current.get(key) for key in made)):
                # Deleted meanwhile, or another run finished first: keep what is recorded.
                transaction.on_commit(lambda: delete_files(made.values()))
                return False
            replaced = [current[key] for key in made if current.get(key)]
            locked.thumbnails = {**current, **made}
            locked.save(update_fields=["thumbnails"])
            transaction.on_commit(lambda: delete_files(replaced))
    return True


def delete_files(names):
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete %s", name)
