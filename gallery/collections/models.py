"""Collections (boards): a team's or a project's hand-picked, ordered sets of images.

Who sees a collection is its own visibility; which of its images they see is each image's
own: a collection never shows anyone an image they could not open by itself.

Imported by gallery/models.py, so Django registers these models with the app.
"""

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from studio.accounts.models import ROLE_RANK, Project, Role, Team


class CollectionVisibility(models.TextChoices):
    PRIVATE = "private", "Private"
    PROJECT = "project", "Project"
    TEAM = "team", "Team"
    UNLISTED = "unlisted", "Anyone with the link"
    PUBLIC = "public", "Public"


class CollectionQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Collections `user` may open from a list (as Collection.may_view answers for
        one): public ones, and their teams' others (private ones to their owner and
        contributors). Unlisted ones are also open to anyone through their link."""
        public = Q(visibility=CollectionVisibility.PUBLIC)
        if not user.is_authenticated:
            return self.filter(public)
        member = Q(team__in=Team.objects.filter(memberships__user=user))
        private = Q(visibility=CollectionVisibility.PRIVATE)
        own = Q(created_by=user) | Q(
            pk__in=Collection.contributors.through.objects.filter(user=user).values(
                "collection"
            )
        )
        return self.filter(public | (member & (~private | own)))

    def addable_by(self, user):
        """Collections `user` may add images to: their teams' ones they manage (their own;
        any, for team admins) or contribute to."""
        if not user.is_authenticated:
            return self.none()
        memberships = user.memberships.all()
        admin_of = memberships.filter(role__in=[Role.ADMIN, Role.OWNER]).values("team")
        contributes = Collection.contributors.through.objects.filter(user=user).values(
            "collection"
        )
        return self.filter(
            Q(team__in=memberships.values("team"))
            & (Q(created_by=user) | Q(team__in=admin_of) | Q(pk__in=contributes))
        )


class LiveCollectionManager(models.Manager.from_queryset(CollectionQuerySet)):
    """Collections that are not deleted: a deleted one is gone from every page at once.
    Collection.all_objects sees deleted ones too, to restore them (gallery.collections.services)."""

    def get_queryset(self):
        return super().get_queryset().filter(deleted_at__isnull=True)


class Collection(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="collections")
    # A project's collection; none: the whole team's.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, null=True, blank=True, related_name="collections"
    )
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    visibility = models.CharField(
        max_length=10,
        choices=CollectionVisibility.choices,
        default=CollectionVisibility.PRIVATE,
    )
    # The secret of its "anyone with the link" URL; made the first time it is shared so.
    share_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    cover = models.ForeignKey(
        "gallery.Image", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    # Team members who may add images (besides its owner and the team's admins).
    contributors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="contributed_collections"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Soft delete: restorable by its managers for STUDIO_DELETE_UNDO_SECONDS.
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = LiveCollectionManager()
    all_objects = CollectionQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["team", "-updated_at"], name="collection_team_recent")]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("collection_detail", args=[self.pk])

    def share_url(self):
        return reverse("collection_shared", args=[self.share_token]) if self.share_token else ""

    def shared_by_link(self):
        return bool(self.share_token) and self.visibility in (
            CollectionVisibility.UNLISTED,
            CollectionVisibility.PUBLIC,
        )

    def scope_name(self):
        return self.project.name if self.project_id else self.team.name

    # Who may do what --------------------------------------------------------------------

    def role_of(self, user):
        return self.team.role_of(user)

    def is_contributor(self, user):
        if not user.is_authenticated:
            return False
        # Remembered on this instance: a page asks several times.
        found = self.__dict__.setdefault("_contributors", {})
        if user.pk not in found:
            found[user.pk] = self.contributors.filter(pk=user.pk).exists()
        return found[user.pk]

    def may_view(self, user):
        """Public: anyone. Otherwise its team's members (project: the project's, which
        today are the team's too), private ones only to their owner and contributors.
        Unlisted ones also open through their link (shared_by_link), not here."""
        if self.visibility == CollectionVisibility.PUBLIC:
            return True
        if self.role_of(user) is None:
            return False
        if self.visibility == CollectionVisibility.PRIVATE:
            return self.created_by_id == user.pk or self.is_contributor(user)
        return True

    def may_manage(self, user):
        """Rename, share, reorder, remove, choose the cover and contributors, delete: its
        owner and the team's admins."""
        role = self.role_of(user)
        if role is None:
            return False
        return self.created_by_id == user.pk or ROLE_RANK[role] >= ROLE_RANK[Role.ADMIN]

    def may_add(self, user):
        return self.may_manage(user) or (
            self.role_of(user) is not None and self.is_contributor(user)
        )

    # Its images -----------------------------------------------------------------------

    def images_for(self, user):
        """Its images that `user` may see, in the collection's order."""
        return (
            apps.get_model("gallery", "Image").objects.visible_to(user)
            .filter(collection_items__collection=self)
            .order_by("collection_items__position", "collection_items__id")
        )


class CollectionItem(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey(
        "gallery.Image", on_delete=models.CASCADE, related_name="collection_items"
    )
    position = models.PositiveIntegerField()
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "image"], name="image_once_per_collection"
            )
        ]
        indexes = [
            models.Index(fields=["collection", "position"], name="collection_item_order")
        ]

    def __str__(self):
        return f"Image {self.image_id} in collection {self.collection_id}"
