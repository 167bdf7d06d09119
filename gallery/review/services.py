"""Team review of images: a review state set by the project's editors (approved, rejected,
back to unreviewed) and a comment thread on the image for its team's members."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from gallery.models import ImageComment, ReviewStatus
from studio.permissions import can

MAX_COMMENT_LENGTH = 2000


class ReviewRefused(ValidationError):
    """Bad review input; the message names what to fix."""


def image_set_review(*, image, user, status):
    """Mark the image approved, rejected or unreviewed, recording who did it and when."""
    if not can(user, "review", image.project):
        raise PermissionDenied("Only the project's editors may review its images.")
    if status not in ReviewStatus.values:
        allowed = ", ".join(label.lower() for label in ReviewStatus.labels)
        raise ReviewRefused(f"Review state: choose one of {allowed}.")
    image.review_status = status
    if status == ReviewStatus.UNREVIEWED:
        image.reviewed_by, image.reviewed_at = None, None
    else:
        image.reviewed_by, image.reviewed_at = user, timezone.now()
    image.save(update_fields=["review_status", "reviewed_by", "reviewed_at"])
    return image


def clean_comment(body):
    body = (body or "").strip()
    if not body:
        raise ReviewRefused("Comment: write something first.")
    if len(body) > MAX_COMMENT_LENGTH:
        raise ReviewRefused(
            f"Comment: at most {MAX_COMMENT_LENGTH} characters (this one has {len(body)})."
        )
    return body


def comment_add(*, image, user, body):
    """A new comment by `user`, who must be in the image's team."""
    if not can(user, "view", image.project):
        raise PermissionDenied("Only the team's members may comment on its images.")
    return ImageComment.objects.create(image=image, author=user, body=clean_comment(body))


def may_delete_comment(user, comment, *, may_review):
    """Its author, or any editor of the project (`may_review`, asked once per page)."""
    return may_review or (comment.author_id is not None and comment.author_id == user.pk)


def comment_delete(*, comment, user):
    may_review = can(user, "review", comment.image.project)
    if not may_delete_comment(user, comment, may_review=may_review):
        raise PermissionDenied("Only its author or the project's editors may delete a comment.")
    comment.delete()


def review_context(*, user, image):
    """What the image page's review section and comment thread show `user` (a member)."""
    may_review = can(user, "review", image.project)
    comments = list(image.comments.select_related("author"))
    for comment in comments:
        comment.may_delete = may_delete_comment(user, comment, may_review=may_review)
    return {
        "may_review": may_review,
        "review_choices": ReviewStatus.choices,
        "comments": comments,
        "max_comment_length": MAX_COMMENT_LENGTH,
    }
