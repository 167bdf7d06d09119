"""A project's card on the dashboard and the team page: its live images' number and its
latest few, for all the cards in two queries (registered from GalleryConfig.ready() as
studio.accounts.project_cards.with_images)."""

from django.db.models import Prefetch

from gallery.models import Image, live_image_count

COVER_IMAGES = 4


def projects_with_images(projects):
    latest = Image.objects.order_by("-created_at", "-id")[:COVER_IMAGES]
    return projects.annotate(image_count=live_image_count()).prefetch_related(
        Prefetch("images", queryset=latest, to_attr="cover_images")
    )
