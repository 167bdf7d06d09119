"""The image detail page: lineage, remix targets and the copy without metadata."""

import io

from PIL import Image as PILImage

from gallery.models import Image
from generation.models import JobMode, roles_at_least
from studio.accounts.models import Project, Role

LINEAGE_LIMIT = 12


def image_lineage(*, user, image):
    """What the image was made from (its job's source) and what was made from it: the
    images of jobs whose source it is. Only what `user` may see is shown; the rest is
    counted as hidden, never described."""
    job = image.job
    source = job.source_image if job is not None else None
    # Deleted (restorable for a while) or already purged, which left the job without one.
    source_deleted = (source is not None and source.deleted_at is not None) or (
        job is not None and source is None and job.mode != JobMode.TXT2IMG
        and not job.source_upload
    )
    source_visible = source is not None and not source_deleted and source.may_view(user)
    children = Image.objects.visible_to(user).filter(job__source_image=image)
    return {
        "source": source if source_visible else None,
        "source_hidden": source is not None and not source_deleted and not source_visible,
        "source_deleted": source_deleted,
        "source_upload": job is not None and source is None and bool(job.source_upload),
        "children": list(children.order_by("-created_at", "-pk")[:LINEAGE_LIMIT]),
        "children_count": children.count(),
    }


def remix_projects(user):
    """The projects `user` may generate in: where a remix can open."""
    if not user.is_authenticated:
        return Project.objects.none()
    return (
        Project.objects.filter(
            team__memberships__user=user, team__memberships__role__in=roles_at_least(Role.EDITOR)
        )
        .select_related("team")
        .order_by("team__name", "name", "pk")
    )


def png_without_metadata(image):
    """The image's pixels as a new PNG: no text chunks (no parameters), no EXIF, no ICC."""
    with image.file.open("rb") as handle:
        picture = PILImage.open(handle)
        picture.load()
    mode = "RGBA" if "A" in picture.getbands() else "RGB"
    picture = picture.convert(mode)
    bare = PILImage.frombytes(mode, picture.size, picture.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG")
    return buffer.getvalue()
