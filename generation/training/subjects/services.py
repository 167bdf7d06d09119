"""Subject workflows: creating subjects, adding their images (checked and rebuilt from
pixels), placing crops and captions, and recording or revoking a person's consent (which
disables every LoRA trained from the subject)."""

import io

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from generation import admission
from generation.loras.models import Lora
from generation.models import JobStatus
from generation.training.models import TrainingRun, TrainingSample
from generation.training.subjects.models import (
    MAX_SUBJECT_IMAGES,
    Subject,
    SubjectConsent,
    SubjectImage,
)
from studio.permissions import can
from studio.uploads import (
    PixelBudget,
    UploadRejected,
    image_from_upload,
    upload_pixels_charge,
)

# Smaller images can't fill a useful training square (DreamBooth trains at 512 or more).
MIN_SUBJECT_IMAGE_SIDE = 256
# zlib's fastest level: a 2048x2048 photo is written in a seventh of the default's time
# for about 15% more bytes, so thirty photos take seconds, not minutes.
PNG_COMPRESS_LEVEL = 1


def require_manager(user, team):
    if not can(user, "manage_subjects", team):
        raise PermissionDenied("Only the team's editors may change its subjects.")


def subject_create(*, team, user, name, class_word, token, depicts_person=False,
                   description=""):
    require_manager(user, team)
    if Subject.objects.filter(team=team, token__iexact=token).exists():
        raise ValidationError(
            f"The token “{token}” already stands for another of {team.name}'s subjects: "
            "choose another rare word.",
            code="token",
        )
    try:
        with transaction.atomic():
            return Subject.objects.create(
                team=team, name=name, class_word=class_word, token=token.lower(),
                depicts_person=depicts_person, description=description, created_by=user,
            )
    except IntegrityError as error:  # the same token, saved a moment ago
        raise ValidationError(
            f"The token “{token}” was just taken by another subject: choose another.",
            code="token",
        ) from error


def subject_delete(*, subject, user):
    """Delete the subject with its images, consent records and training runs (their files
    go once committed). LoRAs trained from it stay in the library; those of a person are
    disabled, since the consent that allowed them goes with the subject."""
    require_manager(user, subject.team)
    files = [image.file for image in subject.images.all()] + [
        sample.file for sample in TrainingSample.objects.filter(run__subject=subject)
    ]
    with transaction.atomic():
        if subject.depicts_person:
            Lora.objects.filter(training_run__subject=subject).update(
                disabled_reason=f"subject “{subject.name}”, a person, was deleted with its "
                "consent record"
            )
        subject.delete()
        transaction.on_commit(lambda: [file.storage.delete(file.name) for file in files])


def subject_images_add(*, subject, user, uploads):
    """Store `uploads` as the subject's images, all or none: a ValidationError names the
    first file refused and why. Every header is checked against the request's pixel budget
    before any image is decoded; then one image at a time is decoded, screened and written
    out, so thirty photos never sit in memory together."""
    require_manager(user, subject.team)
    present = subject.images.count()
    if not uploads:
        raise ValidationError("Choose at least one image.")
    if present + len(uploads) > MAX_SUBJECT_IMAGES:
        raise ValidationError(
            f"A subject has at most {MAX_SUBJECT_IMAGES} images: “{subject.name}” has "
            f"{present}, so add at most {MAX_SUBJECT_IMAGES - present} more."
        )
    budget = PixelBudget()
    for upload in uploads:
        try:
            upload_pixels_charge(upload, budget=budget)
        except UploadRejected as error:
            raise ValidationError(f"{upload.name or 'image'}: {error}") from error
    rows = []
    try:
        for upload in uploads:
            rows.append(_subject_image_stored(subject=subject, user=user, upload=upload))
        with transaction.atomic():
            for row in rows:
                row.save()
    except Exception:
        for row in rows:  # nothing half-added survives a failure
            row.file.storage.delete(row.file.name)
        raise
    return len(rows)


def _subject_image_stored(*, subject, user, upload):
    """An unsaved SubjectImage whose file (the upload rebuilt from its pixels) is written."""
    name = upload.name or "image"
    try:
        image = image_from_upload(upload)
    except UploadRejected as error:
        raise ValidationError(f"{name}: {error}") from error
    if min(image.size) < MIN_SUBJECT_IMAGE_SIDE:
        raise ValidationError(
            f"{name}: {image.width}x{image.height} is too small to train on; its shorter "
            f"side needs at least {MIN_SUBJECT_IMAGE_SIDE} pixels."
        )
    try:  # before the rows' transaction: a hash match's case is kept
        admission.run(
            admission.subject_image_checks,
            user=user, team=subject.team, picture=image, what=f"{name}: this subject image",
        )
    except admission.Refused as error:
        raise ValidationError(str(error)) from error
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    row = SubjectImage(subject=subject, width=image.width, height=image.height)
    row.file.save("image.png", File(buffer), save=False)
    return row


def subject_image_crop(*, image, user, x=None, y=None, size=None):
    """Place the training square by hand (x, y: its top left; size: its side, in the
    image's pixels), or with all three None go back to the centred square."""
    require_manager(user, image.subject.team)
    values = (x, y, size)
    if all(value is None for value in values):
        image.crop_x = image.crop_y = image.crop_size = None
    else:
        if any(value is None for value in values):
            raise ValidationError("Give the crop's x, y and size, or reset it to the centre.")
        if size < MIN_SUBJECT_IMAGE_SIDE:
            raise ValidationError(
                f"A crop of {size} pixels is too small; use at least {MIN_SUBJECT_IMAGE_SIDE}.",
                code="size",
            )
        if x + size > image.width or y + size > image.height:
            raise ValidationError(
                f"A {size}-pixel square at ({x}, {y}) goes past the image's "
                f"{image.width}x{image.height} edge: move it or make it smaller.",
                code="size",
            )
        image.crop_x, image.crop_y, image.crop_size = x, y, size
    image.save(update_fields=["crop_x", "crop_y", "crop_size"])
    return image


def subject_image_caption(*, image, user, caption):
    require_manager(user, image.subject.team)
    image.caption = " ".join(caption.split())
    image.save(update_fields=["caption"])
    return image


def subject_image_delete(*, image, user):
    require_manager(user, image.subject.team)
    storage, name = image.file.storage, image.file.name
    image.delete()
    transaction.on_commit(lambda: storage.delete(name))


def consent_record(*, subject, user, given_by, given_on, scope):
    require_manager(user, subject.team)
    if not subject.depicts_person:
        raise ValidationError(f"“{subject.name}” does not depict a person: no consent is needed.")
    if subject.active_consent() is not None:
        raise ValidationError("Consent is already recorded; revoke it first to record new terms.")
    try:
        with transaction.atomic():
            return SubjectConsent.objects.create(
                subject=subject, given_by=given_by, given_on=given_on, scope=scope,
                recorded_by=user,
            )
    except IntegrityError as error:
        raise ValidationError("Consent was just recorded by someone else.") from error


def consent_revoke(*, subject, user, reason=""):
    """Revoke the subject's consent: every LoRA trained from it is disabled (out of the
    picker, jobs naming it refused), and its queued or running training runs are stopped.
    Returns the LoRAs disabled."""
    require_manager(user, subject.team)
    now = timezone.now()
    with transaction.atomic():
        consent = subject.consents.select_for_update().filter(revoked_at__isnull=True).first()
        if consent is None:
            raise ValidationError("There is no consent in force to revoke.")
        consent.revoked_at, consent.revoked_by, consent.revoke_reason = now, user, reason
        consent.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        disabled = list(Lora.objects.filter(training_run__subject=subject))
        Lora.objects.filter(pk__in=[lora.pk for lora in disabled]).update(
            disabled_reason=(
                f"consent for subject “{subject.name}” was revoked on "
                f"{timezone.localdate(now):%Y-%m-%d}, so LoRAs trained from it can no longer "
                "be used"
            )[:300]
        )
        runs = TrainingRun.objects.filter(subject=subject)
        runs.filter(status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELED,
            error="Canceled: the subject's consent was revoked.",
            finished_at=now,
        )
        runs.filter(status=JobStatus.RUNNING).update(cancel_requested_at=now)
    return disabled
