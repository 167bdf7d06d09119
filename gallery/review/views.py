"""The image page's review section and comment thread: full page posts redirect back to the
image, HTMX posts get the section or the thread back (422 with the error on bad input).
Only the image's team sees them; everyone else gets a 404."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from gallery.models import Image, ImageComment
from gallery.review.services import (
    ReviewRefused,
    comment_add,
    comment_delete,
    image_set_review,
    review_context,
)
from studio.permissions import require

TEMPLATE = "gallery/image_review.html"


def member_image(request, image_id):
    """A live image of a project the user is a member of (404 for anyone else)."""
    image = get_object_or_404(
        Image.objects.select_related("project__team", "reviewed_by"), pk=image_id
    )
    require(request.user, "view", image.project)
    return image


def section_response(request, image, partial, *, error="", body="", status=200):
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(image)
    context = {
        "image": image,
        **review_context(user=request.user, image=image),
        f"{partial}_error": error,
        "comment_body": body,
    }
    return render(request, f"{TEMPLATE}#{partial}", context, status=status)


@login_required
@require_POST
def image_review(request, image_id):
    """Editors mark the image approved, rejected or back to unreviewed."""
    image = member_image(request, image_id)
    require(request.user, "review", image.project)
    try:
        image_set_review(image=image, user=request.user, status=request.POST.get("status", ""))
    except ReviewRefused as refused:
        image.refresh_from_db(fields=["review_status", "reviewed_by", "reviewed_at"])
        return section_response(request, image, "review", error=refused.message, status=422)
    if not request.htmx:
        messages.success(request, f"Review: {image.get_review_status_display().lower()}.")
    return section_response(request, image, "review")


@login_required
@require_POST
def comment_create(request, image_id):
    """Any member of the image's team adds a comment to its thread."""
    image = member_image(request, image_id)
    body = request.POST.get("body", "")
    try:
        comment_add(image=image, user=request.user, body=body)
    except ReviewRefused as refused:
        return section_response(
            request, image, "comments", error=refused.message, body=body, status=422
        )
    return section_response(request, image, "comments")


@login_required
@require_POST
def comment_remove(request, comment_id):
    """Its author, or an editor of the project, deletes a comment (others: 403; outsiders
    and comments on deleted images: 404)."""
    comment = get_object_or_404(
        ImageComment.objects.select_related("image__project__team"),
        pk=comment_id,
        image__deleted_at__isnull=True,
    )
    image = member_image(request, comment.image_id)
    comment_delete(comment=comment, user=request.user)
    return section_response(request, image, "comments")
