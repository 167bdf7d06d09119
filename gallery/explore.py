"""Explore: everyone's public images (public and passed moderation), newest or most liked
first, with the gallery's filters plus LoRA.

It is a query, not a copy: an image made private, failed by a scan, deleted, or gone with
its project leaves Explore at once. Pages are keyset pages; "most liked" orders by
(likes, created_at, id), so images with as many likes never repeat or go missing.
"""

from django import forms
from django.db.models import Exists, OuterRef, Q

from gallery import browse
from gallery.forms import GalleryFilterForm
from gallery.models import Image, ModerationStatus, Visibility
from gallery.reactions import with_reactions
from generation.models import JobLora

NEWEST, MOST_LIKED = "newest", "liked"
SORTS = [(NEWEST, "Newest"), (MOST_LIKED, "Most liked")]


def explore_images():
    return Image.objects.filter(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )


class ExploreFilterForm(GalleryFilterForm):
    """The gallery's filters without user and project, with the LoRA used and the order."""

    lora = forms.ChoiceField(label="LoRA", required=False)
    sort = forms.ChoiceField(label="Sort", choices=SORTS, required=False)

    field_order = ["q", "model", "lora", "mode", "date_from", "date_to", "sort"]

    def __init__(self, data, *, choices):
        super().__init__(data, choices=choices)
        self.fields.pop("review", None)  # a team's own business, not the public's
        self.fields["lora"].choices = [("", "Any LoRA")] + [
            (name, name) for name in choices["loras"]
        ]

    def sort_order(self):
        return self.filters().get("sort") or NEWEST


def filter_choices(scope):
    return {
        **browse.filter_choices(scope, users=False),
        # By name: the same LoRA is in several teams' libraries, under its name.
        "loras": JobLora.objects.filter(job__images__in=scope)
        .order_by("name")
        .values_list("name", flat=True)
        .distinct(),
    }


def filter_explore(images, filters):
    if filters.get("lora"):
        # EXISTS, not a join: an image stays one row however many LoRAs its job stacked.
        used = JobLora.objects.filter(job=OuterRef("job"), name=filters["lora"])
        images = images.filter(Exists(used))
    return browse.filter_images(images, filters)


def encode_liked_cursor(image):
    return f"{image.like_count}.{browse.encode_cursor(image)}"


def decode_liked_cursor(text):
    """(likes, created_at, id) from a "most liked" cursor, or None."""
    likes, _, rest = (text or "").partition(".")
    after = browse.decode_cursor(rest)
    if not likes.isdigit() or len(likes) > 18 or after is None:
        return None
    return int(likes), *after


def decode(cursor, sort):
    return decode_liked_cursor(cursor) if sort == MOST_LIKED else browse.decode_cursor(cursor)


def explore_page(images, *, user, sort, cursor=None):
    """One page of `images`, with their likes and remixes counted."""
    images = with_reactions(images, user, remixes=True)
    if sort != MOST_LIKED:
        return browse.image_page(images, cursor)
    after = decode_liked_cursor(cursor) if cursor else None
    if after is not None:
        likes, created_at, pk = after
        images = images.filter(
            Q(like_count__lt=likes)
            | Q(like_count=likes, created_at__lt=created_at)
            | Q(like_count=likes, created_at=created_at, pk__lt=pk)
        )
    size = browse.PAGE_SIZE
    rows = list(
        images.select_related("project", "created_by").order_by(
            "-like_count", "-created_at", "-pk"
        )[: size + 1]
    )
    more = len(rows) > size
    rows = rows[:size]
    return browse.Page(images=rows, next_cursor=encode_liked_cursor(rows[-1]) if more else None)
