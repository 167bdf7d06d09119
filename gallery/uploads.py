"""Images users upload: checked, then rebuilt from their pixels so nothing else survives
(EXIF, text chunks, trailing data, odd modes)."""

import io
import uuid
import warnings

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}


class UploadRejected(ValueError):
    """The upload is not an image we accept; the message says why and what is allowed."""


def image_from_upload(upload):
    """A clean RGB PIL image from an uploaded file, or UploadRejected."""
    allowed = ", ".join(ALLOWED_FORMATS.values())
    if upload.size > settings.STUDIO_MAX_UPLOAD_BYTES:
        raise UploadRejected(
            f"The file is {upload.size / 1e6:.1f} MB; images up to "
            f"{settings.STUDIO_MAX_UPLOAD_BYTES / 1e6:.0f} MB are accepted."
        )
    data = upload.read()
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise UploadRejected(f"{image.format} images are not accepted; use {allowed}.")
            width, height = image.size
            if width * height > settings.STUDIO_MAX_UPLOAD_PIXELS:
                raise UploadRejected(
                    f"The image is {width}x{height}; at most "
                    f"{settings.STUDIO_MAX_UPLOAD_PIXELS:,} pixels are accepted."
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UploadRejected("The image claims to be too large to open safely.") from error
    except UnidentifiedImageError as error:
        raise UploadRejected(f"The file is not an image; use {allowed}.") from error
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, UploadRejected):
            raise
        raise UploadRejected("The image is damaged or cut short and cannot be read.") from error
    rgb = image.convert("RGB")
    clean = Image.new("RGB", rgb.size)
    clean.paste(rgb)
    return clean


def upload_store(image, *, project):
    """Save a clean image as PNG under a server-chosen name; its storage name."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    name = f"uploads/{project.pk}/{uuid.uuid4().hex}.png"
    return default_storage.save(name, ContentFile(buffer.getvalue()))
