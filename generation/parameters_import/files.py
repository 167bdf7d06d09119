"""Opening an uploaded image safely and finding the metadata it carries."""

import re
import struct

from PIL import ExifTags, PngImagePlugin

from studio.uploads import ImageTooLarge, UploadRejected, image_open_bounded

from .a1111 import parse_a1111_infotext
from .comfyui import parse_comfyui_prompt
from .comfyui_workflow import parse_comfyui_json, parse_comfyui_workflow
from .common import ImportedParameters, ParameterImportError, load_json
from .fooocus import is_fooocus, parse_fooocus_metadata
from .invokeai import parse_invokeai_metadata
from .novelai import is_novelai, parse_novelai_chunks
from .studio import parse_studio_metadata, strict_json

ALLOWED_FORMATS = ("PNG", "WEBP", "JPEG")
# An A1111 infotext as text (pasted, or a .txt as Civitai's "Copy generation data" gives
# it): its settings line starts with the steps.
INFOTEXT_SETTINGS = re.compile(r"(?:^|\n)Steps: \d+")
# The text chunks the importers read (NovelAI: Software, Description, Source, Comment).
METADATA_CHUNKS = ("studio", "parameters", "prompt", "workflow", "invokeai_metadata",
                   "fooocus_scheme", "Software", "Description", "Source", "Comment")


def png_info(*, parameters, spec):
    """PNG text chunks: A1111's `parameters` and the studio's JSON spec."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    info.add_text("studio", strict_json(spec))
    return info


def read_png_parameters(file, *, max_bytes=None) -> ImportedParameters:
    """The parameters embedded in an uploaded PNG, WebP or JPEG (a file object or bytes),
    those of a ComfyUI workflow .json (the UI format its Save writes, or the API format),
    or an A1111 infotext as plain text (what the studio's prompt box takes when pasted).

    Reads at most `max_bytes` (default: settings.STUDIO_MAX_UPLOAD_BYTES, the limit of
    every image upload) whatever the upload claims, and opens it with Pillow's PNG, WebP and
    JPEG decoders only.
    """
    if max_bytes is None:
        from django.conf import settings

        max_bytes = settings.STUDIO_MAX_UPLOAD_BYTES
    data = file if isinstance(file, bytes) else file.read(max_bytes + 1)
    if len(data) > max_bytes:
        limit = (f"{max_bytes / 2**20:.3g} MB" if max_bytes >= 2**20
                 else f"{max_bytes / 2**10:.3g} kB")
        raise ParameterImportError(f"The file is too large to import: at most {limit}.")
    if not data:
        raise ParameterImportError("The file is empty: choose a PNG, WebP or JPEG image.")
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return parse_comfyui_json(_json_text(data))
    infotext = _infotext(data)
    if infotext is not None:
        return parse_a1111_infotext(infotext)
    chunks = _metadata_chunks(data)
    if "studio" in chunks:
        return parse_studio_metadata(chunks["studio"], chunks.get("parameters"))
    if "parameters" in chunks:
        return _parse_parameters(chunks)
    if "invokeai_metadata" in chunks:
        return parse_invokeai_metadata(chunks["invokeai_metadata"])
    if is_novelai(chunks):
        return parse_novelai_chunks(chunks)
    if "prompt" in chunks:  # what ComfyUI ran: preferred to the editor's workflow
        return parse_comfyui_prompt(chunks["prompt"])
    if "workflow" in chunks:
        return parse_comfyui_workflow(chunks["workflow"])
    raise ParameterImportError(
        "This image holds no generation parameters: only PNGs (or JPEG/WebP) saved by this "
        "studio, AUTOMATIC1111, ComfyUI, InvokeAI, NovelAI or Fooocus with their metadata "
        "can be imported."
    )


def _infotext(data):
    """The A1111 infotext `data` is, as text; None when it is no such text (an image)."""
    if _has_allowed_signature(data):
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return text if INFOTEXT_SETTINGS.search(text) else None


def _json_text(data):
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ParameterImportError(
            "The file looks like a ComfyUI workflow .json but is not UTF-8 text."
        ) from error


def _parse_parameters(chunks):
    """A1111's infotext, or Fooocus's JSON in the same chunk."""
    text = chunks["parameters"]
    if not text.lstrip().startswith("{"):
        return parse_a1111_infotext(text)
    metadata = load_json(text, "parameters chunk")
    if is_fooocus(metadata, chunks.get("fooocus_scheme", "")):
        return parse_fooocus_metadata(metadata)
    raise ParameterImportError(
        "The image's parameters are JSON of an unknown tool (not Fooocus's): nothing to import."
    )


def _metadata_chunks(data):
    """{name: text} of the metadata an image carries, after checking it is a sound image."""
    try:
        with image_open_bounded(data, max_pixels=_max_pixels(), formats=ALLOWED_FORMATS) as image:
            chunks = _text_chunks(image)
            if image.format == "PNG":
                image.verify()  # every chunk's CRC up to IEND: catches truncated files
            elif image.format == "JPEG":
                image.draft("RGB", (image.width // 8 or 1, image.height // 8 or 1))
                image.load()  # decoded at 1/8 scale: cheap, and catches truncated files
            else:
                image.load()
    except ImageTooLarge as error:
        raise ParameterImportError(_too_many_pixels_message()) from error
    except UploadRejected as error:
        if not _has_allowed_signature(data):
            raise ParameterImportError(
                "This file is not a PNG, WebP or JPEG image: choose an image saved by this "
                "studio, AUTOMATIC1111 or ComfyUI, a ComfyUI workflow .json, or AUTOMATIC1111's "
                "parameters as text (a settings line starting with “Steps:”)."
            ) from error
        raise ParameterImportError(DAMAGED) from error
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError,
            struct.error) as error:
        # Pillow reports truncated and corrupt files with any of these.
        raise ParameterImportError(DAMAGED) from error
    return chunks


DAMAGED = "The image is damaged or incomplete and cannot be read: save or download it again."


def _has_allowed_signature(data):
    return (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith(b"\xff\xd8\xff")
        or (data.startswith(b"RIFF") and data[8:12] == b"WEBP")
    )


def _max_pixels():
    """The limit of every image upload (studio.uploads checks it from the header)."""
    from django.conf import settings

    return settings.STUDIO_MAX_UPLOAD_PIXELS


def _too_many_pixels_message():
    limit = _max_pixels()
    return (
        f"The image has too many pixels to open safely (at most {limit:,}); it may be a "
        "decompression bomb. Import from a smaller copy."
    )


def _text_chunks(image):
    chunks = {}
    for key, value in image.info.items():
        if isinstance(value, str) and key in METADATA_CHUNKS:
            chunks[key] = _fix_utf8(value)
    if "parameters" not in chunks and image.format in ("JPEG", "WEBP"):
        # A1111 writes JPEG and WebP parameters as the EXIF UserComment; Fooocus writes
        # its UserComment and MakerNote (the scheme) in the first IFD.
        try:
            exif = image.getexif()
            text = _user_comment(exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
                                 or exif.get(ExifTags.Base.UserComment))
            scheme = _user_comment(exif.get(ExifTags.Base.MakerNote))
        except Exception:  # malformed EXIF, in any of the ways Pillow may meet it
            text = scheme = ""
        if scheme:
            chunks["fooocus_scheme"] = scheme
        if not text and isinstance(image.info.get("comment"), bytes):
            text = image.info["comment"].decode("utf-8", errors="replace")
        if text.strip():
            chunks["parameters"] = text
    return chunks


def _fix_utf8(text):
    """PNG tEXt is Latin-1 by the standard; many tools write UTF-8 there all the same."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _user_comment(raw):
    """An EXIF UserComment: an 8-byte charset code, then the text."""
    if isinstance(raw, str):
        return raw.strip("\0")
    if not isinstance(raw, bytes):
        return ""
    prefix, body = bytes(raw[:8]), bytes(raw[8:])
    if prefix == b"UNICODE\0":
        # piexif (A1111) writes UTF-16 big-endian; some tools write little-endian.
        even_zeros = body[0::2].count(0)
        odd_zeros = body[1::2].count(0)
        encoding = "utf-16-le" if odd_zeros > even_zeros else "utf-16-be"
        return body.decode(encoding, errors="replace").strip("\0")
    return body.decode("utf-8", errors="replace").strip("\0")
