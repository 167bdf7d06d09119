"""The image detail page: remix targets and the copy without metadata (lineage:
gallery.lineage)."""

import io

from PIL import Image as PILImage

from generation.models import GenerationJob, roles_at_least
from studio.accounts.models import Project, Role


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


def remix_default_project(user, image, projects):
    """Where "Remix" opens unless the user picks another of `projects` (remix_projects):
    the image's own project if they may generate there, else the one they generated in
    last, else the first."""
    projects = list(projects)
    if not projects:
        return None
    by_pk = {project.pk: project for project in projects}
    if image.project_id in by_pk:
        return by_pk[image.project_id]
    last = (
        GenerationJob.objects.filter(created_by=user, project__in=list(by_pk))
        .order_by("-created_at", "-pk")
        .values_list("project", flat=True)
        .first()
    )
    return by_pk.get(last, projects[0])


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
