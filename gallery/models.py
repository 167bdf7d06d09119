import functools
import re
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import get_script_prefix, reverse
from django.utils import timezone

# The domain packages' models (noqa: F401) are imported for Django, which registers an app's
# models from its models module.
from gallery.collections.models import Collection, CollectionItem  # noqa: F401
from gallery.reactions.models import Favourite, Like  # noqa: F401
from generation.seeds import SeedField
from studio.accounts.models import Project, Team
from studio.permissions import can

# Thumbnails, by their long side in pixels: grids use them, never originals.
THUMBNAIL_SIZES = (256, 512)


def image_upload_path(image, filename):
    # Server-chosen, unguessable names; the file is only ever served through image_file.
    return f"images/{image.project_id}/{uuid.uuid4().hex}.png"


def thumbnail_path(image, size):
    """A thumbnail's storage name: server-chosen, served only through image_thumbnail."""
    return f"thumbnails/{image.project_id}/{uuid.uuid4().hex}-{size}.webp"


class Visibility(models.TextChoices):
    """Who may see an image (its project's members always may)."""

    PROJECT = "project", "Project"
    TEAM = "team", "Team"
    UNLISTED = "unlisted", "Anyone with the link"
    PUBLIC = "public", "Public"


class ModerationStatus(models.TextChoices):
    PENDING = "pending", "Not scanned yet"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"


def share_token():
    return secrets.token_urlsafe(24)


class ReviewStatus(models.TextChoices):
    """Where an image stands in its team's review (set by the project's editors)."""

    UNREVIEWED = "unreviewed", "Unreviewed"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ImageQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Images `user` may see anywhere (as Image.may_view answers for one): those of
        the projects they are a member of, team-visible ones of their teams, and public
        ones that passed moderation. Unlisted images are seen through their link only."""
        public = Q(visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED)
        if not user.is_authenticated:
            return self.filter(public)
        # Project members are their team's members: that also covers team visibility.
        member = Q(project__team__in=Team.objects.filter(memberships__user=user))
        return self.filter(public | member)


class LiveImageManager(models.Manager.from_queryset(ImageQuerySet)):
    """Images that are not deleted. The default manager (and so every related manager,
    prefetch and form field): a deleted image is gone from every page and query at once.
    Image.all_objects sees deleted ones too, for undo and purge (gallery.deletion.services)."""

    def get_queryset(self):
        return super().get_queryset().filter(deleted_at__isnull=True)


def live_image_count(relation="images", *, distinct=False):
    """COUNT of an annotation over `relation` that leaves deleted images out (joins do not
    go through the default manager)."""
    return models.Count(
        relation, distinct=distinct, filter=Q(**{f"{relation}__deleted_at__isnull": True})
    )


# An id no image has, standing in for the image's own in a reversed URL.
URL_ID_PLACEHOLDER = "8765432109"


@functools.cache
def image_url_template(script_prefix, name, *args):
    return reverse(name, args=[URL_ID_PLACEHOLDER, *args])


def image_url(name, image_id, *args):
    """reverse(name, args=[image_id, *args]), resolved once per URL name and arguments:
    a grid asks for five URLs per card, and reverse() was a quarter of its time."""
    template = image_url_template(get_script_prefix(), name, *args)
    return template.replace(URL_ID_PLACEHOLDER, str(image_id), 1)


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    # Its project's team, copied on save (projects never change team): the team grid and
    # its search walk an index of their own instead of the image table (gallery/bench.py).
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", editable=False)
    job = models.ForeignKey(
        "generation.GenerationJob",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="images",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="images"
    )
    file = models.FileField(upload_to=image_upload_path, max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    seed = SeedField()
    parameters = models.TextField(help_text="A1111-style infotext, as written into the PNG.")
    # {"256": storage name, ...}: WebP thumbnails made on the CPU queue after the image is
    # saved (gallery.tasks); empty until then, and grids show the original meanwhile.
    thumbnails = models.JSONField(default=dict, blank=True, editable=False)
    # Who may see it, set by its project's editors; public also needs a passed scan.
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PROJECT
    )
    moderation_status = models.CharField(
        max_length=10, choices=ModerationStatus.choices, default=ModerationStatus.PENDING
    )
    # The secret of its "anyone with the link" URL; made the first time it is shared so.
    share_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # Whether its link hands out the recipe too (prompt, parameters, the PNG with them
    # embedded); off, the link shows the picture only. The editors choose, per image.
    share_recipe = models.BooleanField("link shows the prompt and parameters", default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Team review (gallery.review.services): editors approve or reject; comments are ImageComments.
    review_status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # Soft delete (gallery.deletion.services): hidden everywhere at once, restorable until the undo
    # window ends, then purged with its files. Images deleted together share a deletion id.
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    deletion_id = models.UUIDField(null=True, blank=True, db_index=True)

    objects = LiveImageManager()
    all_objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Gallery grids: a project's or a user's images, newest first, in keyset pages.
            models.Index(fields=["project", "-created_at", "-id"], name="image_project_newest"),
            models.Index(fields=["created_by", "-created_at", "-id"], name="image_user_newest"),
            # A team's live images, newest first: its grid's pages and its count read no
            # other team's images nor any deleted one.
            models.Index(
                fields=["team", "-created_at", "-id"],
                condition=Q(deleted_at__isnull=True),
                name="image_team_live_newest",
            ),
            # The purge's "deleted before the undo window" scan: deleted rows only.
            models.Index(
                fields=["deleted_at"], condition=Q(deleted_at__isnull=False), name="image_deleted"
            ),
            # Explore, newest first: only the public, passed, live images (a small part of
            # all of them), so its pages and count never read the rest (gallery/bench.py).
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(
                    visibility="public", moderation_status="passed", deleted_at__isnull=True
                ),
                name="image_public_newest",
            ),
        ]

    def __str__(self):
        return f"Image {self.pk}"

    def save(self, *args, **kwargs):
        if self.team_id is None:
            self.team_id = self.project.team_id
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        return image_url("image_detail", self.pk)

    # Who may see it -------------------------------------------------------------------

    def is_public(self):
        return (
            self.visibility == Visibility.PUBLIC
            and self.moderation_status == ModerationStatus.PASSED
        )

    def may_view(self, user):
        """Its project's members; its team's for team visibility (today the same people:
        projects are open to their whole team); anyone once public. Unlisted images are
        seen through their link (shared_by_link), not here."""
        if self.is_public():
            return True
        if not user.is_authenticated:
            return False
        if can(user, "view", self.project):
            return True
        return self.visibility == Visibility.TEAM and self.project.team.role_of(user) is not None

    def shared_by_link(self):
        """Whether its link (share_url) opens it for anyone: never while a scan flagged it
        or moderators removed it (failed), until they decide."""
        return (
            bool(self.share_token)
            and self.moderation_status != ModerationStatus.FAILED
            and (self.visibility == Visibility.UNLISTED or self.is_public())
        )

    def link_shows_recipe(self):
        """Whether its link shows the prompt and parameters: where its editors chose so,
        and once it is public (its own page shows them to everyone then)."""
        return self.share_recipe or self.is_public()

    def share_url(self):
        return reverse("image_shared", args=[self.share_token]) if self.share_token else ""

    def file_url(self):
        return image_url("image_file", self.pk)

    def like_url(self):
        return image_url("image_like", self.pk)

    def download_url(self):
        """The original PNG as an attachment, its parameters embedded."""
        return reverse("image_file", args=[self.pk]) + "?download=1"

    def clean_download_url(self):
        """A copy re-encoded from the pixels alone: no parameters, no metadata."""
        return reverse("image_download_clean", args=[self.pk])

    def thumbnail_name(self, size):
        return (self.thumbnails or {}).get(str(size))

    def has_thumbnails(self):
        return all(self.thumbnail_name(size) for size in THUMBNAIL_SIZES)

    def thumbnail_url(self, size):
        return image_url("image_thumbnail", self.pk, size)

    @property
    def thumb_url(self):
        """The small thumbnail for a grid, or the original while it is not made yet."""
        if self.thumbnail_name(THUMBNAIL_SIZES[0]):
            return self.thumbnail_url(THUMBNAIL_SIZES[0])
        return self.file_url()

    @property
    def thumb_srcset(self):
        """Every thumbnail made, for <img srcset> ("" while there are none)."""
        return ", ".join(
            f"{self.thumbnail_url(size)} {size}w"
            for size in THUMBNAIL_SIZES
            if self.thumbnail_name(size)
        )

    def alt_text(self):
        return self.prompt[:200]

    def sampler_label(self):
        """The sampler as the image's infotext names it: the worker writes A1111's name
        for a model's own scheduler too ("PLMS" for PNDM). "" without one."""
        settings_line = self.parameters.rsplit("\n", 1)[-1]
        found = re.search(r"(?:^|, )Sampler: ([^,]+)", settings_line)
        return found.group(1) if found else ""

    def event_payload(self):
        return {
            "id": self.pk,
            "url": self.file_url(),
            "detail_url": self.get_absolute_url(),
            "alt": self.alt_text(),
        }


class ImageComment(models.Model):
    """One message in an image's review thread; its team's members read and write them."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["image", "created_at"], name="comment_image_oldest")]

    def __str__(self):
        return f"Comment {self.pk} on image {self.image_id}"

