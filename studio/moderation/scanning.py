"""Scanning images: every generated image is hashed (PDQ) and classified on the CPU
`moderation` queue; its scan decides whether it may ever be public. Uploaded images are
hashed at submit, so removed content can't come back as a source image either, and
subject images (training data) are classified too before they are stored."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image as PILImage

from gallery.models import Image, ModerationStatus
from generation.admission import Refused
from studio.moderation.hashing import MIN_QUALITY, nearest, pdq_hash, picture_fitted
from studio.moderation.models import (
    BlockedHash,
    Case,
    CaseKind,
    ImageScan,
    Policy,
    ScanDecision,
)
from studio.moderation.scanners import configured_scanner
from studio.realtime.event_types import EventType
from studio.realtime.events import publish

logger = logging.getLogger(__name__)

# Classifiers look at a few hundred pixels (NudeNet resizes to 320 or 640): what a scan
# gets is the picture at most this large, so an upload at the pixel limit is classified in
# the time of a small one and no second full-size copy is made.
SCAN_SIDE = 1024


@dataclass(frozen=True)
class Thresholds:
    flag_at: float
    block_at: float

    def decide(self, score):
        if score >= self.block_at:
            return ScanDecision.BLOCK
        if score >= self.flag_at:
            return ScanDecision.FLAG
        return ScanDecision.PASS


def thresholds_for(team):
    """The site's thresholds (its policy's, else the settings'), tightened by the team's
    policy: a team may flag or block sooner than the site, never later."""
    flag_at, block_at = settings.STUDIO_SCAN_FLAG_AT, settings.STUDIO_SCAN_BLOCK_AT
    scopes = Policy.objects.filter(team__isnull=True)
    if team is not None:
        scopes = scopes | Policy.objects.filter(team=team)
    for policy in sorted(scopes, key=lambda p: p.team_id or 0):
        site = policy.team_id is None
        if policy.scan_flag_at is not None:
            flag_at = policy.scan_flag_at if site else min(flag_at, policy.scan_flag_at)
        if policy.scan_block_at is not None:
            block_at = policy.scan_block_at if site else min(block_at, policy.scan_block_at)
    return Thresholds(flag_at=min(flag_at, block_at), block_at=block_at)


def blocked_match(hex_hash, quality):
    """(BlockedHash, distance) within STUDIO_HASH_MATCH_DISTANCE bits, or (None, None)."""
    if quality < MIN_QUALITY:
        return None, None
    found, bits = nearest(hex_hash, BlockedHash.objects.only("pk", "pdq_hash").iterator())
    if found is None or bits > settings.STUDIO_HASH_MATCH_DISTANCE:
        return None, None
    return found, bits


STATUS_OF = {
    ScanDecision.PASS: ModerationStatus.PASSED,
    # Flagged images wait for a moderator, hidden like failed ones (gallery shows only
    # their project, blurred); blocked ones stay failed.
    ScanDecision.FLAG: ModerationStatus.FAILED,
    ScanDecision.BLOCK: ModerationStatus.FAILED,
}


def open_picture(image):
    with image.file.open("rb") as handle:
        picture = PILImage.open(handle)
        picture.load()
    return picture.convert("RGB")


def image_scan(*, image_id):
    """Scan one image: hash, blocklist, classifier, decision. Idempotent: an image scanned
    before (or deleted meanwhile) is left alone. Returns the ImageScan or None."""
    image = Image.objects.select_related("project__team").filter(pk=image_id).first()
    if image is None or ImageScan.objects.filter(image_id=image_id).exists():
        return None
    try:
        picture = open_picture(image)
    except (OSError, ValueError):
        logger.exception("Image %s: the file could not be read; not scanned", image_id)
        return None
    hex_hash, quality = pdq_hash(picture)
    matched, bits = blocked_match(hex_hash, quality)
    if matched is not None:
        result, decision, label, score = None, ScanDecision.BLOCK, "", 0.0
    else:
        # The classifier runs outside any transaction: it may take a while.
        result = configured_scanner().scan(picture_fitted(picture, SCAN_SIDE))
        label, score = result.top()
        decision = thresholds_for(image.project.team).decide(score)
    with transaction.atomic():
        locked = Image.objects.select_for_update().filter(pk=image_id).first()
        if locked is None or ImageScan.objects.filter(image_id=image_id).exists():
            return None  # deleted meanwhile, or another run finished first
        scan = ImageScan.objects.create(
            image=locked,
            scanner=result.scanner if result else "hash blocklist",
            scores=dict(result.scores) if result else {},
            top_label=label,
            top_score=score,
            decision=decision,
            pdq_hash=hex_hash,
            pdq_quality=quality,
            matched_hash=matched,
            match_distance=bits,
        )
        Image.objects.filter(pk=image_id).update(moderation_status=STATUS_OF[decision])
        if matched is not None:
            case_open_for_image(
                image=image, kind=CaseKind.HASH_MATCH, escalated=True,
                summary=f"Matches content removed before ({bits} bits of 256 apart).",
            )
        elif decision == ScanDecision.FLAG:
            case_open_for_image(
                image=image, kind=CaseKind.SCAN_FLAG,
                summary=f"{scan.scanner}: {label} {score:.2f}.",
            )
        transaction.on_commit(lambda: image_moderated_publish(image.pk), robust=True)
    return scan


def case_open_for_image(*, image, kind, summary, escalated=False):
    now = timezone.now()
    return Case.objects.create(
        kind=kind, team=image.project.team, subject_user=image.created_by,
        subject_image_id=image.pk, summary=summary, escalated=escalated,
        created_at=now, updated_at=now,
    )


def image_moderated_publish(image_id):
    """Tell the image's project its moderation status changed (scan or decision)."""
    image = Image.objects.select_related("project").filter(pk=image_id).first()
    if image is None:
        return
    scan = ImageScan.objects.filter(image_id=image_id).first()
    publish(
        image.project.events_group(),
        {
            "type": EventType.IMAGE_MODERATED,
            "image": image.event_payload(),
            "moderation_status": image.moderation_status,
            "decision": scan.decision if scan else "",
        },
    )


def image_generated_scan(sender, *, image, **kwargs):
    """Receiver of gallery.signals.image_generated: each new image is scanned."""
    image_scan_schedule(image=image)


def image_scan_schedule(*, image):
    """Scan the image on the `moderation` queue once its row is committed."""
    from studio.moderation.dispatch import enqueue_scan

    # A lambda: Django names a failed robust callback by its __qualname__ (a partial has none).
    transaction.on_commit(lambda: enqueue_scan(image.pk), robust=True)


class UploadBlocked(ValueError):
    """An uploaded image matches content moderators removed, or its scan refused it."""


def upload_screen(*, user, team, picture, what="This image"):
    """Refuse an uploaded image whose hash matches removed content, opening an escalated
    hash-match case about the uploader (callers screen before their transaction). `what`
    names the upload in the message ("The image prompt")."""
    hex_hash, quality = pdq_hash(picture)
    matched, bits = blocked_match(hex_hash, quality)
    if matched is None:
        return
    now = timezone.now()
    Case.objects.create(
        kind=CaseKind.HASH_MATCH, team=team, subject_user=user, escalated=True,
        summary=f"Uploaded an image matching removed content ({bits} bits of 256 apart; "
        f"removed image #{matched.source_image_id}).",
        created_at=now, updated_at=now,
    )
    raise UploadBlocked(
        f"{what} matches content the moderators removed, so it can't be used. "
        "If you think this is a mistake, contact the moderators."
    )


def training_upload_screen(*, user, team, picture, what):
    """A subject image becomes training data, so besides the blocklist it is classified
    now: one the team's thresholds would flag or block is refused, naming the label and
    score (nothing is stored, so there is nothing for a moderator to review)."""
    upload_screen(user=user, team=team, picture=picture, what=what)
    label, score = configured_scanner().scan(picture_fitted(picture, SCAN_SIDE)).top()
    decision = thresholds_for(team).decide(score)
    if decision != ScanDecision.PASS:
        raise UploadBlocked(
            f"{what} was {decision.label.lower()} by the moderation scan ({label} "
            f"{score:.2f}): images a LoRA learns from must pass it. Choose another image."
        )


def subject_image_screen(*, user, team, picture, what):
    """training_upload_screen as generation's subject-image check (generation.admission)."""
    try:
        training_upload_screen(user=user, team=team, picture=picture, what=what)
    except UploadBlocked as blocked:
        raise Refused(str(blocked)) from blocked
