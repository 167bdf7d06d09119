"""Reactions to an image: likes (public, counted on cards; Explore sorts by them) and
favourites (a user's private bookmarks, a gallery filter). One of each per user per image.

Imported by gallery/models.py, so Django registers these models with the app.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Like(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="image_likes"
    )
    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="likes")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "image"], name="one_like_per_user")
        ]

    def __str__(self):
        return f"{self.user} likes image {self.image_id}"


class Favourite(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="image_favourites"
    )
    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="favourites")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "image"], name="one_favourite_per_user")
        ]

    def __str__(self):
        return f"{self.user}'s favourite image {self.image_id}"
