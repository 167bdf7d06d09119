"""Moderators' decisions on images and LoRAs: approve, remove (blocklist, strike,
notification), appeals and their outcome. Each writes an audit row."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery.collections.models import Collection
from gallery.models import Image, ModerationStatus, Visibility
from generation.loras.models import Lora
from studio.moderation.hashing import MIN_QUALITY, pdq_hash
from studio.moderation.models import (
    BlockedHash,
    Case,
    CaseKind,
    CaseStatus,
    ImageScan,
    Notification,
    Removal,
    Resolution,
    Standing,
    is_site_moderator,
)
from studio.moderation.publishing import (
    collection_publish,
    image_publish,
    publish_request_deny,
)
from studio.moderation.scanning import image_moderated_publish, open_picture
from studio.moderation.services import REASON_CODES, audit, case_escalate, case_resolve


class DecisionRefused(ValueError):
    """The decision can't be made on this case; the message says why."""


def notify(*, user, message, url=""):
    if user is not None:
        Notification.objects.create(user=user, message=message[:500], url=url)


def reason_label(code):
    return dict(REASON_CODES).get(code, code)


# Strikes -------------------------------------------------------------------------------


def suspension_end(expiries, threshold):
    """When the count of strikes (their expiry times) drops below `threshold`, or None
    when it is below already."""
    if threshold <= 0 or len(expiries) < threshold:
        return None
    return sorted(expiries)[len(expiries) - threshold]


def standing_from_strikes(*, user, actor):
    """Set the user's suspensions from their active strikes: publishing from
    STUDIO_STRIKES_SUSPEND_PUBLISHING strikes on, generating from ..._GENERATION, each
    until enough of them expire. A moderator's longer ban is left as it is. Audited when
    it changes anything."""
    expiries = list(Removal.objects.strikes(user).values_list("strike_expires_at", flat=True))
    standing, _ = Standing.objects.select_for_update().get_or_create(user=user)
    before = standing.snapshot()
    standing.publishing_suspended_until = suspension_end(
        expiries, settings.STUDIO_STRIKES_SUSPEND_PUBLISHING
    )
    generation_until = suspension_end(expiries, settings.STUDIO_STRIKES_SUSPEND_GENERATION)
    banned = standing.is_suspended() and not standing.suspended_by_strikes
    if generation_until is not None and not (
        banned and standing.suspended_until >= generation_until
    ):
        standing.suspended_until = generation_until
        standing.suspended_by_strikes = True
        standing.reason = f"{len(expiries)} active strikes"
    elif generation_until is None and standing.suspended_by_strikes:
        standing.suspended_until = None
        standing.suspended_by_strikes = False
        standing.reason = ""
    standing.save()
    if standing.snapshot() != before:
        audit(
            actor=actor, action="user.strikes", target=f"user:{user.pk}",
            note=f"{len(expiries)} active strikes", before=before, after=standing.snapshot(),
        )
    return standing


def publishing_refusal(user):
    """Why the user may not make anything public now, or None."""
    standing = Standing.objects.filter(user=user).first()
    if standing is None or not standing.is_publishing_suspended():
        return None
    until = timezone.localtime(standing.publishing_suspended_until)
    return (
        f"You may not publish until {until:%Y-%m-%d %H:%M %Z}: your content was removed by "
        "the moderators more than once recently. Team and link sharing still work."
    )


# Subjects of a case --------------------------------------------------------------------


def case_subject(case):
    """("image", Image), ("lora", Lora) or ("collection", Collection) the case is about,
    or (None, None)."""
    if case.subject_image_id:
        image = Image.objects.select_related("project__team").filter(
            pk=case.subject_image_id
        ).first()
        return ("image", image) if image else (None, None)
    if case.subject_lora_id:
        lora = Lora.objects.filter(pk=case.subject_lora_id).first()
        return ("lora", lora) if lora else (None, None)
    if case.subject_collection_id:
        collection = Collection.objects.select_related("team").filter(
            pk=case.subject_collection_id
        ).first()
        return ("collection", collection) if collection else (None, None)
    return None, None


def image_snapshot(image):
    return {
        "visibility": image.visibility,
        "moderation_status": image.moderation_status,
        "share_token": image.share_token,
    }


def blocklist_add(*, image, moderator, reason_code):
    """Add the image's PDQ hash to the blocklist (computed now if it has no scan yet)."""
    scan = ImageScan.objects.filter(image_id=image.pk).first()
    if scan is not None and scan.pdq_hash:
        hex_hash, quality = scan.pdq_hash, scan.pdq_quality
    else:
        try:
            hex_hash, quality = pdq_hash(open_picture(image))
        except (OSError, ValueError):
            return None
    if quality < MIN_QUALITY:
        return None  # too featureless to match anything safely
    blocked, _ = BlockedHash.objects.get_or_create(
        pdq_hash=hex_hash,
        defaults={"source_image_id": image.pk, "reason_code": reason_code, "added_by": moderator},
    )
    return blocked


def related_cases(case, moderator):
    """The open cases (appeals aside) about the same image or LoRA that `moderator` may
    decide, this one first: a team moderator never settles a site-only case (a publishing
    request) along with their own."""
    others = Case.objects.visible_to(moderator).open().queue().exclude(pk=case.pk)
    if case.subject_image_id:
        others = others.filter(subject_image_id=case.subject_image_id)
    elif case.subject_lora_id:
        others = others.filter(subject_lora_id=case.subject_lora_id)
    elif case.subject_collection_id:
        others = others.filter(subject_collection_id=case.subject_collection_id)
    else:
        others = others.none()
    return [case, *others]


def resolve(case, *, moderator, action, resolution, reason_code, note):
    before = case.snapshot()
    case.status = CaseStatus.RESOLVED
    case.resolution = resolution
    case.updated_at = timezone.now()
    case.save(update_fields=["status", "resolution", "updated_at"])
    audit(
        actor=moderator, action=f"case.{action}", target=f"case:{case.pk}", team=case.team,
        reason_code=reason_code, note=note, before=before, after=case.snapshot(),
    )


# Decisions -----------------------------------------------------------------------------


def case_approve(*, case, moderator, reason_code, note=""):
    """The content is fine: a flagged or hash-matched image passes (a removed one stays
    removed: only its appeal restores it); an image or collection whose owner asked to
    publish it becomes public; the case and the others about it close."""
    kind, subject = case_subject(case)
    with transaction.atomic():
        held = kind == "image" and subject.moderation_status != ModerationStatus.PASSED
        if held and not Removal.objects.filter(
            image_id=subject.pk, restored_at__isnull=True
        ).exists():
            before = image_snapshot(subject)
            Image.objects.filter(pk=subject.pk).update(moderation_status=ModerationStatus.PASSED)
            subject.moderation_status = ModerationStatus.PASSED
            audit(
                actor=moderator, action="image.approve", target=f"image:{subject.pk}",
                team=case.team, reason_code=reason_code, note=note, before=before,
                after=image_snapshot(subject),
            )
            transaction.on_commit(lambda: image_moderated_publish(subject.pk))
        cases = related_cases(case, moderator)
        asked = next((each for each in cases if each.kind == CaseKind.PUBLISH_REQUEST), None)
        published = None
        # Strikes since the request keep its owner from publishing: nothing goes public.
        if asked and (refusal := publishing_refusal(asked.subject_user)):
            notify(user=asked.subject_user, url=subject.get_absolute_url(),
                   message=f"Your publishing request was not carried out. {refusal}")
            asked = None
        if asked and kind == "image" and subject.moderation_status == ModerationStatus.PASSED:
            image_publish(image=subject, moderator=moderator, reason_code=reason_code, note=note)
            published = f"image #{subject.pk}"
        elif asked and kind == "collection":
            collection_publish(
                collection=subject, moderator=moderator, reason_code=reason_code, note=note
            )
            published = f"collection “{subject.name}”"
        if published:
            notify(user=asked.subject_user, url=subject.get_absolute_url(),
                   message=f"The moderators approved your {published}: it is public now.")
        # A LoRA's owner asked to publish it (moderation.public_loras.services): approved, it is.
        if kind == "lora" and any(each.kind == CaseKind.LORA_PUBLISH for each in cases):
            Lora.objects.filter(pk=subject.pk).update(is_public=True)
            audit(actor=moderator, action="lora.publish", target=f"lora:{subject.pk}",
                  team=case.team, reason_code=reason_code, note=note,
                  before={"is_public": False}, after={"is_public": True})
        for each in cases:
            resolve(each, moderator=moderator, action="approve",
                    resolution=Resolution.APPROVED, reason_code=reason_code, note=note)
    return case


def case_remove(*, case, moderator, reason_code, note=""):
    """Take the case's image or LoRA out of public view, block the image's hash, give its
    owner a strike and tell them why. Other open cases about it close with it."""
    kind, subject = case_subject(case)
    if kind is None:
        raise DecisionRefused("This case has no image or LoRA to remove (it may be deleted).")
    if kind == "collection":
        raise DecisionRefused(
            "A collection isn't removed: deny its publishing request (its images are "
            "moderated one by one)."
        )
    if Removal.objects.filter(
        **{f"{kind}_id": subject.pk}, restored_at__isnull=True
    ).exists():
        raise DecisionRefused(f"This {kind} is removed already.")
    now = timezone.now()
    with transaction.atomic():
        if kind == "image":
            owner, team = subject.created_by, subject.project.team
            before = image_snapshot(subject)
            subject.visibility = Visibility.PROJECT
            subject.moderation_status = ModerationStatus.FAILED
            subject.share_token = None  # whoever had the link loses it
            Image.objects.filter(pk=subject.pk).update(**{
                name: getattr(subject, name)
                for name in ("visibility", "moderation_status", "share_token")
            })
            after = image_snapshot(subject)
            blocklist_add(image=subject, moderator=moderator, reason_code=reason_code)
            transaction.on_commit(lambda: image_moderated_publish(subject.pk))
        else:
            owner, team = subject.created_by, subject.team
            before = {"is_public": subject.is_public}
            Lora.objects.filter(pk=subject.pk).update(is_public=False)
            after = {"is_public": False}
        removal = Removal.objects.create(
            **{f"{kind}_id": subject.pk}, owner=owner, team=team, case=case,
            moderator=moderator, reason_code=reason_code, note=note, before=before,
            created_at=now, strike_expires_at=now + timedelta(days=settings.STUDIO_STRIKE_DAYS),
        )
        audit(
            actor=moderator, action=f"{kind}.remove", target=f"{kind}:{subject.pk}", team=team,
            reason_code=reason_code, note=note, before=before, after=after,
        )
        for each in related_cases(case, moderator):
            resolve(each, moderator=moderator, action="remove",
                    resolution=Resolution.REMOVED, reason_code=reason_code, note=note)
        if owner is not None:
            notify(
                user=owner, url=removal.get_absolute_url(),
                message=f"The moderators removed your {removal.subject_label()}: "
                f"{reason_label(reason_code)}.{' ' + note if note else ''} "
                "You may appeal once.",
            )
            standing_from_strikes(user=owner, actor=moderator)
    return removal


def removal_appeal(*, removal, user, note):
    """The owner asks once for a removal to be reconsidered: an appeal case, in the
    appeals queue."""
    note = note.strip()
    if removal.owner_id != user.pk:
        raise DecisionRefused("Only the owner may appeal this removal.")
    if not note:
        raise DecisionRefused("Say why the removal was a mistake (the note is required).")
    with transaction.atomic():
        locked = Removal.objects.select_for_update().get(pk=removal.pk)
        if not locked.may_appeal():
            raise DecisionRefused("This removal was appealed already; each removal once.")
        now = timezone.now()
        # A site moderator's removal is reviewed by site moderators only: a team's own
        # moderators may not overturn it (nor lift its site-wide blocked hash).
        site_removal = locked.moderator is not None and is_site_moderator(locked.moderator)
        case = Case.objects.create(
            kind=CaseKind.APPEAL, team=None if site_removal else locked.team,
            subject_user=user,
            subject_image_id=locked.image_id, subject_lora_id=locked.lora_id,
            summary=note[:500], created_at=now, updated_at=now,
        )
        locked.appeal_note, locked.appealed_at, locked.appeal_case = note, now, case
        locked.save(update_fields=["appeal_note", "appealed_at", "appeal_case"])
        audit(
            actor=user, action="removal.appeal", target=f"removal:{locked.pk}",
            team=locked.team, note=note,
        )
    return locked


def appeal_decide(*, case, moderator, uphold, reason_code, note=""):
    """Uphold an appeal (the item comes back, the strike and the blocked hash go) or
    deny it. Someone other than the removing moderator decides."""
    removal = Removal.objects.filter(appeal_case=case).first()
    if case.kind != CaseKind.APPEAL or removal is None:
        raise DecisionRefused("Only appeals are upheld or denied.")
    if case.status != CaseStatus.OPEN:
        raise DecisionRefused("This appeal is decided already.")
    if removal.moderator_id == moderator.pk:
        raise DecisionRefused("Another moderator decides appeals of your own removals.")
    with transaction.atomic():
        if uphold:
            item_restore(removal=removal, moderator=moderator, reason_code=reason_code, note=note)
        resolve(
            case, moderator=moderator, action="uphold" if uphold else "deny",
            resolution=Resolution.UPHELD if uphold else Resolution.DENIED,
            reason_code=reason_code, note=note,
        )
        outcome = "upheld: it is restored and the strike is lifted" if uphold else (
            "denied: the removal stands"
        )
        notify(
            user=removal.owner, url=removal.get_absolute_url(),
            message=f"Your appeal of the removal of your {removal.subject_label()} was "
            f"{outcome}.{' ' + note if note else ''}",
        )
    return removal


def item_restore(*, removal, moderator, reason_code, note):
    now = timezone.now()
    if removal.image_id:
        image = Image.objects.filter(pk=removal.image_id).first()
        if image is not None:
            before = image_snapshot(image)
            restored = {
                "visibility": removal.before.get("visibility", Visibility.PROJECT),
                "moderation_status": ModerationStatus.PASSED,
                "share_token": removal.before.get("share_token"),
            }
            Image.objects.filter(pk=image.pk).update(**restored)
            audit(
                actor=moderator, action="image.restore", target=f"image:{image.pk}",
                team=removal.team, reason_code=reason_code, note=note, before=before,
                after=restored,
            )
            transaction.on_commit(lambda: image_moderated_publish(image.pk))
        BlockedHash.objects.filter(source_image_id=removal.image_id).delete()
    else:
        restored = {"is_public": removal.before.get("is_public", False)}
        Lora.objects.filter(pk=removal.lora_id).update(**restored)
        audit(
            actor=moderator, action="lora.restore", target=f"lora:{removal.lora_id}",
            team=removal.team, reason_code=reason_code, note=note,
            before={"is_public": False}, after=restored,
        )
    removal.restored_at = now
    removal.save(update_fields=["restored_at"])
    if removal.owner is not None:
        standing_from_strikes(user=removal.owner, actor=moderator)


# One entry point for the panel ---------------------------------------------------------

ACTIONS = ("approve", "remove", "dismiss", "warn", "ban", "escalate", "uphold", "deny")
PUBLISH_KINDS = (CaseKind.PUBLISH_REQUEST, CaseKind.LORA_PUBLISH)


def case_decide(*, case, moderator, action, reason_code, note="", days=7, site_moderator):
    """Apply one panel action to one case (the queue's buttons, keys and bulk bar).

    The case's row is locked and re-read first: a decision settles related cases too, so
    a bulk action (or another moderator) may find one of its cases already resolved."""
    with transaction.atomic():
        current = Case.objects.select_for_update().filter(pk=case.pk).values("status").first()
        if current is None or current["status"] != CaseStatus.OPEN:
            raise DecisionRefused(f"Case {case.pk} is already resolved.")
        return _decide(case=case, moderator=moderator, action=action, reason_code=reason_code,
                       note=note, days=days, site_moderator=site_moderator)


def _decide(*, case, moderator, action, reason_code, note, days, site_moderator):
    if action == "deny" and case.kind in PUBLISH_KINDS:
        return publish_request_deny(
            case=case, moderator=moderator, reason_code=reason_code, note=note
        )
    appeal = case.kind == CaseKind.APPEAL
    if appeal != (action in ("uphold", "deny")):
        raise DecisionRefused(
            "Appeals are upheld or denied." if appeal else "Only appeals are upheld or denied."
        )
    if action == "ban" and not site_moderator:
        raise DecisionRefused("Only site moderators suspend accounts; escalate instead.")
    if action == "escalate":
        if site_moderator:
            raise DecisionRefused("Site moderators decide escalated cases themselves.")
        return case_escalate(case=case, moderator=moderator, reason_code=reason_code, note=note)
    if action == "approve":
        return case_approve(case=case, moderator=moderator, reason_code=reason_code, note=note)
    if action == "remove":
        return case_remove(case=case, moderator=moderator, reason_code=reason_code, note=note)
    if action in ("uphold", "deny"):
        return appeal_decide(
            case=case, moderator=moderator, uphold=action == "uphold",
            reason_code=reason_code, note=note,
        )
    return case_resolve(
        case=case, moderator=moderator, action=action, reason_code=reason_code, note=note,
        days=days,
    )
