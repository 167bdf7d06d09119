"""Images users upload: checked, then rebuilt from their pixels so nothing else survives
(EXIF, text chunks, trailing data, odd modes).

Bytes are not the cost of an image, decoded pixels are: a 50 kB PNG may declare
60000x60000. So every image that enters is opened by `image_open_bounded` alone: only the
decoders of the accepted formats run, and the size its header declares is checked against
the pixel limit before a single pixel is decoded. The images of one request share a
budget of decoded pixels (`PixelBudget`, STUDIO_MAX_REQUEST_PIXELS)."""

import io
import struct
import uuid
import warnings

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, UnidentifiedImageError

ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}


class UploadRejected(ValueError):
    """The upload is not an image we accept; the message says why and what is allowed."""


def pillow_limit_apply():
    """Pillow's own guard at the studio's limit. Pillow only warns between its limit and
    twice it, and refuses beyond that (WebP before its decoder allocates the canvas);
    image_open_bounded refuses anything above the limit itself."""
    Image.MAX_IMAGE_PIXELS = settings.STUDIO_MAX_UPLOAD_PIXELS


class ImageTooLarge(UploadRejected):
    """The image declares more pixels than the limit."""


class PixelBudget:
    """The pixels one request may still decode: thirty photos at the size limit would be
    half a billion pixels, so a request's images together stop at STUDIO_MAX_REQUEST_PIXELS
    before any of them is decoded."""

    def __init__(self, total=None):
        self.total = settings.STUDIO_MAX_REQUEST_PIXELS if total is None else total
        self.spent = 0

    def spend(self, pixels, *, what="These images"):
        if self.spent + pixels > self.total:
            raise UploadRejected(
                f"{what} would decode {self.spent + pixels:,} pixels in one request; at most "
                f"{self.total:,} are accepted. Send fewer or smaller images at a time."
            )
        self.spent += pixels


def image_open_bounded(data, *, max_pixels, formats=tuple(ALLOWED_FORMATS)):
    """`data` (bytes) opened with Pillow's decoders for `formats` only: its header read,
    nothing decoded. UploadRejected, naming the limit, when the header declares more than
    `max_pixels` or the file is no image of `formats`."""
    names = ", ".join(ALLOWED_FORMATS.get(name, name) for name in formats)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's guard (at the same limit, see pillow_limit_apply) came first.
        raise ImageTooLarge(
            f"The image is too large to open safely: it declares more than the "
            f"{max_pixels:,} pixels accepted (a decompression bomb?). Use a smaller image."
        ) from error
    except UnidentifiedImageError as error:
        found = _format_by_signature(data)
        if found and found not in formats:
            raise UploadRejected(f"{found} images are not accepted; use {names}.") from error
        if found:
            raise UploadRejected(
                "The image is damaged or cut short and cannot be read."
            ) from error
        raise UploadRejected(f"The file is not an image; use {names}.") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadRejected("The image is damaged or cut short and cannot be read.") from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(
            f"The image is {width}x{height}; at most {max_pixels:,} pixels are accepted."
        )
    return image


def _format_by_signature(data):
    """The name of the format `data` starts like, by Pillow's signature checks alone: no
    decoder of a format we refuse ever runs."""
    Image.init()
    prefix = data[:64]
    for name, (_, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix):
                return name
        except (struct.error, IndexError, TypeError, ValueError):
            continue  # some signature checks fail on a few bytes rather than say no
    return None


def upload_pixels_charge(upload, *, budget):
    """Charge `budget` with the pixels the upload's header declares, decoding nothing:
    a request checks all its images this way before it decodes the first."""
    _refuse_too_many_bytes(upload)
    upload.seek(0)
    image = image_open_bounded(upload.read(), max_pixels=settings.STUDIO_MAX_UPLOAD_PIXELS)
    image.close()
    budget.spend(image.width * image.height)


def _refuse_too_many_bytes(upload):
    if upload.size > settings.STUDIO_MAX_UPLOAD_BYTES:
        raise UploadRejected(
            f"The file is {upload.size / 1e6:.1f} MB; images up to "
            f"{settings.STUDIO_MAX_UPLOAD_BYTES / 1e6:.0f} MB are accepted."
        )


def image_from_upload(upload, *, budget=None):
    """A clean RGB PIL image from an uploaded file, or UploadRejected. `budget`: the
    request's PixelBudget, charged before the image is decoded."""
    _refuse_too_many_bytes(upload)
    upload.seek(0)
    image = image_open_bounded(upload.read(), max_pixels=settings.STUDIO_MAX_UPLOAD_PIXELS)
    if budget is not None:
        budget.spend(image.width * image.height)
    try:
        image.load()
        # A new image of the pixels alone, the decoded original dropped as soon as it is
        # converted: at most two copies of the pixels exist at once.
        clean = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadRejected("The image is damaged or cut short and cannot be read.") from error
    finally:
        image.close()
    clean.info = {}
    return clean


def upload_store(image, *, project):
    """Save a clean image as PNG under a server-chosen name; its storage name."""
    buffer = io.BytesIO()
    # zlib's fastest level: seconds less for a large upload, for about 15% more bytes.
    image.save(buffer, format="PNG", compress_level=1)
    name = f"uploads/{project.pk}/{uuid.uuid4().hex}.png"
    return default_storage.save(name, ContentFile(buffer.getvalue()))
