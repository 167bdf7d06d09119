"""Explore: everyone's public images (public and passed moderation), newest or most liked
first, with the gallery's filters plus LoRA.

It is a query, not a copy: an image made private, failed by a scan, deleted, or gone with
its project leaves Explore at once. Pages are keyset pages; "most liked" orders by
(likes, created_at, id), so images with as many likes never repeat or go missing.
"""

from django import forms
from django.db.models import Exists, OuterRef

from gallery import browse
from gallery.forms import GalleryFilterForm
from gallery.models import Image, ModerationStatus, Visibility
from gallery.reactions.services import with_reactions
from generation.models import JobLora


def explore_images():
    return Image.objects.filter(
        visibility=Visibility.PUBLIC, moderation_status=ModerationStatus.PASSED
    )


class ExploreFilterForm(GalleryFilterForm):
    """The gallery's filters without user and project, with the LoRA used and the order."""

    lora = forms.ChoiceField(label="LoRA", required=False)

    field_order = ["q", "model", "lora", "mode", "date_from", "date_to", "sort"]

    def __init__(self, data, *, choices):
        super().__init__(data, choices=choices)
        self.fields.pop("review", None)  # a team's own business, not the public's
        self.fields["lora"].choices = [("", "Any LoRA")] + [
            (name, name) for name in choices["loras"]
        ]


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


def explore_page(images, *, user, sort, cursor=None):
    """One page of `images`, with their likes and remixes counted."""
    images = with_reactions(images, user, remixes=True)
    return browse.sorted_page(images, sort=sort, cursor=cursor)
