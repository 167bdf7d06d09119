"""What a project's card (dashboard, team page) shows of its images: their number
(`image_count`) and the latest few (`cover_images`). Images are the gallery's, a layer
above: it registers `with_images` from AppConfig.ready() (gallery.projects), and the
accounts pages call it without importing the gallery (the import layers,
docs/ARCHITECTURE.md)."""

from collections.abc import Callable

from django.db.models import QuerySet, Value


def no_images(projects: QuerySet) -> QuerySet:
    """Without a gallery: no project has images."""
    return projects.annotate(image_count=Value(0))


with_images: Callable[[QuerySet], QuerySet] = no_images


def with_images_register(annotate: Callable[[QuerySet], QuerySet]) -> None:
    global with_images
    with_images = annotate
