"""Who may see an image: its visibility (set by its project's editors) and its link."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from gallery import publication
from gallery.models import ModerationStatus, Visibility, share_token
from studio.permissions import can


class VisibilityRefused(ValidationError):
    """The image can't take that visibility; the message says why and what to do."""


def public_refusal(image):
    """Why the image can't be public yet, or None if it may be."""
    if image.moderation_status == ModerationStatus.PASSED:
        return None
    if image.moderation_status == ModerationStatus.FAILED:
        return "This image failed its moderation scan, so it can't be made public."
    return (
        "Public images must pass a moderation scan first, and this one has not been "
        "scanned yet (it takes a moment after it is made). Share it with your team or by "
        "link meanwhile."
    )


def image_set_visibility(*, image, user, visibility):
    """Set who may see the image; public only once a moderation scan passed and, where
    the site policy wants it, a moderator approved (then the image stays as it is and a
    publishing request waits for the moderators; choosing anything else withdraws it).
    An image shared by link gets its secret link the first time and keeps it."""
    if not can(user, "generate", image.project):
        raise PermissionDenied("Only the project's editors may change who sees its images.")
    if visibility not in Visibility.values:
        allowed = ", ".join(label.lower() for label in Visibility.labels)
        raise VisibilityRefused(f"Choose who may see it: {allowed}.")
    if visibility == Visibility.PUBLIC and (refusal := public_refusal(image)):
        raise VisibilityRefused(refusal)
    if visibility == Visibility.PUBLIC and (refusal := publication.gate.refusal(user)):
        raise VisibilityRefused(refusal)
    with transaction.atomic():
        if visibility == Visibility.PUBLIC and image.visibility != Visibility.PUBLIC and (
            publication.gate.needs_approval()
        ):
            publication.gate.request_open(user=user, image=image)
            return image
        if visibility != Visibility.PUBLIC:
            publication.gate.request_withdraw(image=image)
        image.visibility = visibility
        fields = ["visibility"]
        if visibility in (Visibility.UNLISTED, Visibility.PUBLIC) and not image.share_token:
            image.share_token = share_token()
            fields.append("share_token")
        image.save(update_fields=fields)
    return image


def visibility_message(image):
    """What the editor reads after choosing who may see the image."""
    if publication.gate.pending(image=image):
        return (
            "Publishing requested: a moderator decides. Until then it stays visible to: "
            f"{image.get_visibility_display().lower()}."
        )
    return f"Visible to: {image.get_visibility_display().lower()}."


def image_share_link_reset(*, image, user):
    """A new secret link: whoever had the old one loses access."""
    if not can(user, "generate", image.project):
        raise PermissionDenied("Only the project's editors may change who sees its images.")
    image.share_token = share_token()
    image.save(update_fields=["share_token"])
    return image


def image_share_recipe_set(*, image, user, share_recipe):
    """Whether the image's secret link shows its prompt and parameters (and serves the PNG
    with them embedded) or the picture only."""
    if not can(user, "generate", image.project):
        raise PermissionDenied("Only the project's editors may change who sees its images.")
    image.share_recipe = share_recipe
    image.save(update_fields=["share_recipe"])
    return image
