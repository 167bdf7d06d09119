"""Gallery grids: which images a page shows, its filters and keyset pages (newest or most
liked first).

A page costs the same few queries however many images there are: the images of the page
(one query, with what their cards need), the filter choices (one query each) and the
viewer's role. Pages are keyset pages on (created_at, id), or (likes, created_at, id) for
"most liked", so new images arriving while a user scrolls, or images with as many likes,
neither repeat nor skip any.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q

from gallery.forms import MOST_LIKED
from gallery.models import Image
from generation.models import DiffusionModel, GenerationJob
from generation.prompt_history import search
from studio.accounts.models import Project

PAGE_SIZE = 40
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def project_images(project):
    return Image.objects.filter(project=project)


def team_images(team):
    return Image.objects.filter(team=team)


def user_images(user):
    """The user's own images in the teams they are still in."""
    return Image.objects.filter(created_by=user, project__team__memberships__user=user)


def encode_cursor(image):
    since_epoch = image.created_at - EPOCH
    micros = (since_epoch.days * 86_400 + since_epoch.seconds) * 1_000_000
    return f"{micros + since_epoch.microseconds}.{image.pk}"


def decode_cursor(text):
    """(created_at, id) from a cursor, or None for anything that is not one."""
    micros, _, pk = (text or "").partition(".")
    if not (micros.isdecimal() and pk.isdecimal()) or len(micros) > 18 or len(pk) > 18:
        return None
    try:
        return EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except OverflowError:  # past the year 9999: no image's cursor
        return None


def filter_images(images, filters):
    """`filters`: GalleryFilterForm.cleaned_data (the valid fields only)."""
    if filters.get("q"):
        images = search(images, filters["q"])
    if filters.get("model"):
        images = images.filter(job__model=filters["model"])
    if filters.get("user"):
        images = images.filter(created_by=filters["user"])
    if filters.get("project"):
        images = images.filter(project=filters["project"])
    if filters.get("mode"):
        images = images.filter(job__mode=filters["mode"])
    if filters.get("review"):
        images = images.filter(review_status=filters["review"])
    if filters.get("date_from"):
        images = images.filter(created_at__gte=datetime.combine(filters["date_from"], time(), UTC))
    if filters.get("date_to") and filters["date_to"] < date.max:  # date.max: no bound
        day_after = filters["date_to"] + timedelta(days=1)
        images = images.filter(created_at__lt=datetime.combine(day_after, time(), UTC))
    return images


@dataclass
class Page:
    images: list
    next_cursor: str | None


def image_page(images, cursor=None, size=None):
    """One page of `images`, newest first, starting after `cursor`."""
    size = size or PAGE_SIZE
    after = decode_cursor(cursor) if cursor else None
    if after is not None:
        created_at, pk = after
        images = images.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    rows = list(
        images.select_related("project", "created_by").order_by("-created_at", "-pk")[: size + 1]
    )
    more = len(rows) > size
    rows = rows[:size]
    return Page(images=rows, next_cursor=encode_cursor(rows[-1]) if more else None)


def encode_liked_cursor(image):
    return f"{image.like_count}.{encode_cursor(image)}"


def decode_liked_cursor(text):
    """(likes, created_at, id) from a "most liked" cursor, or None."""
    likes, _, rest = (text or "").partition(".")
    after = decode_cursor(rest)
    if not likes.isdecimal() or len(likes) > 18 or after is None:
        return None
    return int(likes), *after


def decode_sorted_cursor(cursor, sort):
    return decode_liked_cursor(cursor) if sort == MOST_LIKED else decode_cursor(cursor)


def sorted_page(images, *, sort, cursor=None):
    """One page of `images` (annotated with like_count, see gallery.reactions.services) in `sort`
    order, starting after `cursor`."""
    if sort != MOST_LIKED:
        return image_page(images, cursor)
    after = decode_liked_cursor(cursor) if cursor else None
    if after is not None:
        likes, created_at, pk = after
        images = images.filter(
            Q(like_count__lt=likes)
            | Q(like_count=likes, created_at__lt=created_at)
            | Q(like_count=likes, created_at=created_at, pk__lt=pk)
        )
    rows = list(
        images.select_related("project", "created_by").order_by(
            "-like_count", "-created_at", "-pk"
        )[: PAGE_SIZE + 1]
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return Page(images=rows, next_cursor=encode_liked_cursor(rows[-1]) if more else None)


def filter_choices(scope, *, users=True, projects=False, narrow=False):
    """What the filters offer: the models (and users, projects) found in `scope`.

    Per model, whether any image of the scope used it (EXISTS: a few index probes, where
    "IN (the scope's models)" read the images until it had met every model). A team's or
    a project's images are most of a table, so each model's jobs are walked and their
    images probed by job (PostgreSQL scanned the image table for the team's otherwise); a
    `narrow` scope (a user's own images) is read from its images."""
    if narrow:
        used = Exists(scope.filter(job__model=OuterRef("pk")))
    else:
        used = Exists(
            GenerationJob.objects.filter(model=OuterRef("pk"))
            .filter(Exists(scope.filter(job=OuterRef("pk"))))
        )
    choices = {"models": DiffusionModel.objects.filter(used).order_by("name")}
    if users:
        choices["users"] = (
            get_user_model()
            .objects.filter(pk__in=scope.values("created_by"))
            .order_by("username")
        )
    if projects:
        choices["projects"] = Project.objects.filter(pk__in=scope.values("project")).order_by(
            "name"
        )
    return choices
