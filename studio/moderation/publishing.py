"""Publishing requests: where the site policy says so, making an image or a collection
public asks the site moderators (a case of kind "Publishing request") and it stays as it
was meanwhile, so nothing is public before a moderator approves. Approving makes it
public (studio.moderation.removals.case_approve); denying leaves it as it was and tells
its owner why. With the policy off, a passed scan is enough (gallery.sharing)."""

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from gallery.collections.models import Collection, CollectionVisibility
from gallery.models import Image, Visibility, share_token
from generation.loras.models import Lora
from studio.moderation.models import Case, CaseKind, CaseStatus, Policy, Resolution
from studio.moderation.services import REASON_CODES, audit


def publishing_needs_approval():
    """Whether the site policy wants a moderator's approval for public images and
    collections."""
    return Policy.objects.filter(team__isnull=True, publishing_needs_approval=True).exists()


def subject_fields(*, image=None, collection=None):
    if image is not None:
        return {"subject_image_id": image.pk}
    return {"subject_collection_id": collection.pk}


def pending_publish_request(*, image=None, collection=None):
    """The open publishing request of the image or collection, or None."""
    return (
        Case.objects.open()
        .filter(kind=CaseKind.PUBLISH_REQUEST, **subject_fields(image=image, collection=collection))
        .first()
    )


def publish_request_open(*, user, image=None, collection=None):
    """Ask the site moderators to make the image or collection public (at most one open
    request each; asking again returns the open one). No team: only site moderators see
    it, since it would be shown to everyone."""
    with transaction.atomic():
        # One request at a time: concurrent asks wait on the subject's row.
        if image is not None:
            Image.objects.select_for_update().filter(pk=image.pk).first()
        else:
            Collection.objects.select_for_update().filter(pk=collection.pk).first()
        pending = pending_publish_request(image=image, collection=collection)
        if pending is not None:
            return pending
        if image is not None:
            summary = f"Make image #{image.pk} of {image.project.name} " \
                f"({image.project.team.name}) public."
        else:
            summary = f"Make the collection “{collection.name}” of {collection.team.name} " \
                "public (its images are shown only where each is public itself)."
        now = timezone.now()
        return Case.objects.create(
            kind=CaseKind.PUBLISH_REQUEST, subject_user=user, summary=summary[:500],
            created_at=now, updated_at=now, **subject_fields(image=image, collection=collection),
        )


def publish_request_withdraw(*, image=None, collection=None):
    """Its owner chose another visibility: a pending request is no longer wanted."""
    Case.objects.open().filter(
        kind=CaseKind.PUBLISH_REQUEST, **subject_fields(image=image, collection=collection)
    ).update(
        status=CaseStatus.RESOLVED, resolution=Resolution.DISMISSED, updated_at=timezone.now()
    )


def image_publish(*, image, moderator, reason_code, note=""):
    """A moderator approved the image's publishing request: it is public now (with its
    secret link, as any public image). Audited."""
    before = {"visibility": image.visibility, "share_token": image.share_token}
    image.visibility = Visibility.PUBLIC
    image.share_token = image.share_token or share_token()
    Image.objects.filter(pk=image.pk).update(
        visibility=image.visibility, share_token=image.share_token
    )
    audit(
        actor=moderator, action="image.publish", target=f"image:{image.pk}",
        team=image.project.team, reason_code=reason_code, note=note, before=before,
        after={"visibility": image.visibility, "share_token": image.share_token},
    )


def collection_publish(*, collection, moderator, reason_code, note=""):
    """A moderator approved the collection's publishing request: it is public now. Its
    images still show only where each is public itself. Audited."""
    before = {"visibility": collection.visibility, "share_token": collection.share_token}
    collection.visibility = CollectionVisibility.PUBLIC
    collection.share_token = collection.share_token or share_token()
    Collection.objects.filter(pk=collection.pk).update(
        visibility=collection.visibility, share_token=collection.share_token
    )
    audit(
        actor=moderator, action="collection.publish", target=f"collection:{collection.pk}",
        team=collection.team, reason_code=reason_code, note=note, before=before,
        after={"visibility": collection.visibility, "share_token": collection.share_token},
    )


def subject_link(case):
    """(what the request was about, its page) for the notification."""
    if case.subject_image_id:
        return f"image #{case.subject_image_id}", reverse("image_detail", args=[
            case.subject_image_id
        ])
    if case.subject_collection_id:
        collection = Collection.objects.filter(pk=case.subject_collection_id).first()
        if collection is not None:
            return f"collection “{collection.name}”", collection.get_absolute_url()
        return "collection", ""
    lora = Lora.objects.filter(pk=case.subject_lora_id).first()
    if lora is not None:
        return f"LoRA “{lora.name}”", reverse("lora_detail", args=[lora.pk])
    return "LoRA", ""


def publish_request_deny(*, case, moderator, reason_code, note=""):
    """Refuse a publishing request (an image's, a collection's or a LoRA's): it stays as
    it was, and whoever asked is told why. Audited."""
    from studio.moderation.removals import notify, resolve

    with transaction.atomic():
        resolve(case, moderator=moderator, action="deny", resolution=Resolution.DENIED,
                reason_code=reason_code, note=note)
        reason = dict(REASON_CODES).get(reason_code, reason_code)
        label, url = subject_link(case)
        notify(
            user=case.subject_user, url=url,
            message=f"The moderators did not publish your {label}: {reason}."
            f"{' ' + note if note else ''} It stays visible only to those who saw it before.",
        )
    return case
