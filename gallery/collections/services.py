"""Collections: create, change, share, fill, order and delete them.

Each function checks who may do it (PermissionDenied otherwise) and refuses bad input
with CollectionRefused, whose message names what to fix; nothing is half done.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from gallery import publication
from gallery.collections.models import Collection, CollectionItem, CollectionVisibility
from gallery.deletion.services import undo_window, undo_window_label
from gallery.models import Image, share_token
from studio.accounts.models import ROLE_RANK, Role

MAX_IMAGES_PER_ADD = 200


class CollectionRefused(ValidationError):
    """The change can't be made; the message says why and what to do."""


def may_create(user, team):
    role = team.role_of(user)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.EDITOR]


def check_visibility(*, visibility, project):
    if visibility not in CollectionVisibility.values:
        allowed = ", ".join(label.lower() for label in CollectionVisibility.labels)
        raise CollectionRefused(f"Visibility: choose one of {allowed}.")
    if visibility == CollectionVisibility.PROJECT and project is None:
        raise CollectionRefused(
            "Visibility: a team collection can't be limited to a project; choose team."
        )


def share(collection):
    """Make its secret link the first time it is shared by link (or made public)."""
    shared = (CollectionVisibility.UNLISTED, CollectionVisibility.PUBLIC)
    if collection.visibility in shared and not collection.share_token:
        collection.share_token = share_token()


def held_for_approval(collection, visibility):
    """Whether making it public waits for a moderator (the site policy says so): it then
    keeps its saved visibility (a new one the default) until a moderator approves."""
    saved = CollectionVisibility.PRIVATE  # a new collection's default
    if collection.pk:  # the instance may carry a form's unsaved choice
        saved = Collection.all_objects.values_list("visibility", flat=True).get(
            pk=collection.pk
        )
    held = (
        visibility == CollectionVisibility.PUBLIC
        and saved != CollectionVisibility.PUBLIC
        and publication.gate.needs_approval()
    )
    collection.visibility = saved if held else visibility
    return held


def publishing_message(collection):
    """What its manager reads after saving it: that public waits for a moderator."""
    if publication.gate.pending(collection=collection):
        return (
            "Publishing requested: a moderator decides. Until then it stays visible to: "
            f"{collection.get_visibility_display().lower()}."
        )
    return ""


def collection_create(*, user, team, project=None, name, description="", visibility):
    """A new collection of the team (or of one of its projects), owned by `user`; a
    public one may wait for a moderator first (held_for_approval)."""
    if not may_create(user, team):
        raise PermissionDenied("Only the team's editors may make collections.")
    if project is not None and project.team_id != team.pk:
        raise PermissionDenied("That project is not the team's.")
    check_visibility(visibility=visibility, project=project)
    collection = Collection(
        team=team, project=project, name=name, description=description, created_by=user,
    )
    held = held_for_approval(collection, visibility)
    share(collection)
    with transaction.atomic():
        collection.save()
        if held:
            publication.gate.request_open(user=user, collection=collection)
    return collection


def collection_update(*, collection, user, name, description, visibility):
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may change it.")
    check_visibility(visibility=visibility, project=collection.project)
    collection.name, collection.description = name, description
    held = held_for_approval(collection, visibility)
    share(collection)
    collection.updated_at = timezone.now()
    with transaction.atomic():
        collection.save()
        if held:
            publication.gate.request_open(user=user, collection=collection)
        elif visibility != CollectionVisibility.PUBLIC:
            publication.gate.request_withdraw(collection=collection)
    return collection


def collection_delete(*, collection, user):
    """Delete the collection (its images stay where they are): gone at once, restorable
    for the undo window; the purge (gallery.deletion.services.collections_purge_due) removes it
    after."""
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may delete it.")
    Collection.objects.filter(pk=collection.pk).update(deleted_at=timezone.now())


def collection_restore(*, collection, user):
    """Undo a deletion while the undo window lasts."""
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may restore it.")
    if collection.deleted_at is None:
        return
    if collection.deleted_at <= timezone.now() - undo_window():
        raise CollectionRefused(
            f"“{collection.name}” was deleted more than {undo_window_label()} ago: it can't "
            "be restored any more."
        )
    Collection.all_objects.filter(pk=collection.pk).update(deleted_at=None)


def parse_image_ids(values):
    """Image ids from a form's `image` values, in order, once each; refused if any is not
    one or there are none or too many."""
    ids = []
    for value in values:
        if not str(value).isdecimal() or len(str(value)) > 18:
            raise CollectionRefused(f"Images: “{value}” is not an image.")
        if int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise CollectionRefused("Images: choose at least one image.")
    if len(ids) > MAX_IMAGES_PER_ADD:
        raise CollectionRefused(f"Images: at most {MAX_IMAGES_PER_ADD} at a time.")
    return ids


def collection_add_images(*, collection, user, image_ids):
    """Add the images (at the end, in the given order) if `user` may see every one of
    them; images already in it stay where they are. All or nothing. Returns how many were
    added."""
    if not collection.may_add(user):
        raise PermissionDenied("Only its owner, contributors and the team's admins may add.")
    visible = set(
        Image.objects.visible_to(user).filter(pk__in=image_ids).values_list("pk", flat=True)
    )
    missing = [pk for pk in image_ids if pk not in visible]
    if missing:
        # Not found and not visible read the same: no probing for what exists.
        raise CollectionRefused(
            f"Images: {len(missing)} of the chosen images can't be found; nothing was added."
        )
    with transaction.atomic():
        locked = Collection.objects.select_for_update().get(pk=collection.pk)
        present = set(locked.items.filter(image__in=image_ids).values_list("image", flat=True))
        last = locked.items.aggregate(last=Max("position"))["last"]
        position = 0 if last is None else last + 1
        new = []
        for pk in image_ids:
            if pk not in present:
                new.append(CollectionItem(
                    collection=locked, image_id=pk, position=position, added_by=user
                ))
                position += 1
        CollectionItem.objects.bulk_create(new)
        Collection.objects.filter(pk=locked.pk).update(updated_at=timezone.now())
    return len(new)


def collection_remove_image(*, collection, user, image):
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may remove images.")
    with transaction.atomic():
        collection.items.filter(image=image).delete()
        if collection.cover_id == image.pk:
            collection.cover = None
            collection.save(update_fields=["cover"])


def collection_move_image(*, collection, user, image, direction):
    """Swap the image with its neighbour (among the images `user` sees) before it ("up")
    or after it ("down"); at either end nothing moves."""
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may reorder it.")
    if direction not in ("up", "down"):
        raise CollectionRefused("Direction: up or down.")
    with transaction.atomic():
        Collection.objects.select_for_update().get(pk=collection.pk)
        item = collection.items.get(image=image)
        visible = collection.items.filter(image__in=Image.objects.visible_to(user))
        if direction == "up":
            neighbour = visible.filter(position__lt=item.position).order_by("-position").first()
        else:
            neighbour = visible.filter(position__gt=item.position).order_by("position").first()
        if neighbour is None:
            return
        item.position, neighbour.position = neighbour.position, item.position
        CollectionItem.objects.bulk_update([item, neighbour], ["position"])


def collection_place_image(*, collection, user, image, target, side):
    """Put the image just before or after `target`, another of its images (`side`
    "before" or "after"): where a dragged card is dropped. Positions are renumbered."""
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may reorder it.")
    if side not in ("before", "after"):
        raise CollectionRefused("Side: before or after.")
    if target is None or target.pk == image.pk:
        raise CollectionRefused("Target: choose another of the collection's images.")
    with transaction.atomic():
        Collection.objects.select_for_update().get(pk=collection.pk)
        items = list(collection.items.order_by("position", "pk"))
        moving = next((item for item in items if item.image_id == image.pk), None)
        if moving is None:  # removed from it meanwhile
            raise CollectionRefused("Image: it is no longer in the collection.")
        items.remove(moving)
        index = next((n for n, item in enumerate(items) if item.image_id == target.pk), None)
        if index is None:
            raise CollectionRefused("Target: choose another of the collection's images.")
        items.insert(index + (side == "after"), moving)
        for position, item in enumerate(items):
            item.position = position
        CollectionItem.objects.bulk_update(items, ["position"])


def collection_set_cover(*, collection, user, image):
    """The cover is one of its images, or none (`image` None): its first image then."""
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may choose the cover.")
    if image is not None and not collection.items.filter(image=image).exists():
        raise CollectionRefused("Cover: choose one of the collection's images.")
    collection.cover = image
    collection.save(update_fields=["cover"])


def collection_set_contributor(*, collection, user, contributor, add):
    """Let a team member add images (add) or no longer (not add)."""
    if not collection.may_manage(user):
        raise PermissionDenied("Only its owner and the team's admins may choose contributors.")
    if add:
        if collection.team.role_of(contributor) is None:
            raise CollectionRefused("Contributor: choose a member of the team.")
        collection.contributors.add(contributor)
    else:
        collection.contributors.remove(contributor)
