"""Likes and favourites: toggled by whoever may see the image, counted on every card.

Counts are annotations (one subquery each in the page's single query), so a grid costs
the same queries however many images and likes there are.
"""

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, Func, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from gallery.models import Favourite, Image, Like


def count_of(queryset):
    """A subquery counting `queryset`'s rows per image (its `image` column = OuterRef)."""
    counted = queryset.order_by().values("image").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def remixes_of():
    """Images made from the outer image (their job's source, or remixed from it): its
    remixes, not deleted."""
    parent = OuterRef("pk")
    made_from = (
        Image.objects.filter(Q(job__source_image=parent) | Q(job__remix_of=parent))
        .order_by()
        # COUNT without GROUP BY: one row, whichever way each image was made from it.
        .annotate(n=Func("pk", function="COUNT"))
        .values("n")
    )
    return Coalesce(Subquery(made_from, output_field=IntegerField()), Value(0))


def with_reactions(images, user, *, remixes=False):
    """`images` with like_count, liked and favourited (by `user`) on each; and
    remix_count with `remixes`."""
    images = images.annotate(like_count=count_of(Like.objects.filter(image=OuterRef("pk"))))
    if user.is_authenticated:
        images = images.annotate(
            liked=Exists(Like.objects.filter(image=OuterRef("pk"), user=user)),
            favourited=Exists(Favourite.objects.filter(image=OuterRef("pk"), user=user)),
        )
    if remixes:
        images = images.annotate(remix_count=remixes_of())
    return images


def favourites_of(images, user):
    """The user's favourites among `images` (the grids' "Favourites" filter)."""
    return images.filter(favourites__user=user) if user.is_authenticated else images.none()


def reaction_toggle(*, model, image, user, on):
    """Like (or favourite) the image, or take it back. Idempotent: liking twice is one
    like, and a like racing another of the same user's ends as one."""
    if on:
        try:
            with transaction.atomic():
                model.objects.get_or_create(user=user, image=image)
        except IntegrityError:
            pass  # the other request made it
    else:
        model.objects.filter(user=user, image=image).delete()


def image_reactions(image, user):
    """What the image's like and favourite buttons show, for one image (detail page): the
    like count and the viewer's like in one aggregate of the image's likes, the favourite in
    a second query. The grids' annotations (with_reactions) on the one image would be a
    single query, but measured slower to build and to run than these two."""
    if not user.is_authenticated:
        return {"like_count": image.likes.count()}
    likes = image.likes.aggregate(like_count=Count("pk"), liked=Count("pk", filter=Q(user=user)))
    return {
        "like_count": likes["like_count"],
        "liked": likes["liked"] > 0,
        "favourited": Favourite.objects.filter(image=image, user=user).exists(),
    }


def image_panel(image, user):
    """The image page's likes, favourite and collections: those it is in that `user` may
    see, and those they may add it to."""
    from gallery.collections.models import Collection

    related = ("team", "project")
    listed = Collection.objects.visible_to(user).filter(items__image=image)
    addable = Collection.objects.none()
    # Seen by its secret link alone: its counts, but no liking or collecting it.
    may_react = image.may_view(user)
    if may_react:
        addable = Collection.objects.addable_by(user).exclude(items__image=image)
    return {
        **image_reactions(image, user),
        "may_react": may_react,
        "image_collections": list(listed.select_related(*related).order_by("name", "pk")),
        "addable_collections": list(
            addable.select_related(*related).order_by("team__name", "name", "pk")
        ),
    }
