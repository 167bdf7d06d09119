"""Public LoRAs: a LoRA's owner (who added it, or a team admin) asks to publish it; a site
moderator approves the request in the moderation queue (studio.moderation: a case of kind
"LoRA publishing request") and from then on everyone may browse and download it. The
owner may make it private again at any time."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from generation.loras.models import Lora
from studio.moderation.models import Case, CaseKind, CaseStatus, Resolution
from studio.moderation.removals import publishing_refusal
from studio.permissions import can


def browsable_loras():
    """Public LoRAs everyone sees: approved, and not disabled since."""
    return Lora.objects.filter(is_public=True).enabled().select_related("team", "created_by")


def may_publish(user, lora):
    """Who added it (while still an editor of its team), or an admin of its team."""
    is_owner = lora.created_by_id == user.pk and can(user, "manage_loras", lora.team)
    return is_owner or can(user, "manage_members", lora.team)


def pending_request(lora):
    return Case.objects.open().filter(kind=CaseKind.LORA_PUBLISH, subject_lora_id=lora.pk).first()


def publish_refusal(lora):
    """Why `lora` may not be published, or None."""
    if lora.disabled_reason:
        return f"It is disabled: {lora.disabled_reason}."
    run = getattr(lora, "training_run", None)
    if run is not None and run.subject.depicts_person:
        return (
            f"It was trained on {run.subject.name}, a real person: their likeness stays "
            "in the team."
        )
    return None


def lora_publish_request(*, lora, user, note=""):
    """Open a publishing request for the site moderators; a ValidationError says why not."""
    if not may_publish(user, lora):
        raise PermissionDenied("Only who added the LoRA or a team admin may publish it.")
    if lora.is_public:
        raise ValidationError("It is public already.")
    refusal = publish_refusal(lora) or publishing_refusal(user)
    if refusal:
        raise ValidationError(refusal)
    now = timezone.now()
    with transaction.atomic():
        Lora.objects.select_for_update().filter(pk=lora.pk).first()  # one request at a time
        if pending_request(lora) is not None:
            raise ValidationError("Publishing is already requested; a moderator will decide.")
        # No team: only site moderators see it, since it would be shown to every team.
        return Case.objects.create(
            kind=CaseKind.LORA_PUBLISH,
            subject_lora_id=lora.pk,
            subject_user=user,
            summary=(f"Publish the LoRA “{lora.name}” of {lora.team.name}. {note}").strip()[:500],
            created_at=now,
            updated_at=now,
        )


def lora_unpublish(*, lora, user):
    """Back to the team only; a pending request is withdrawn."""
    if not may_publish(user, lora):
        raise PermissionDenied("Only who added the LoRA or a team admin may unpublish it.")
    with transaction.atomic():
        Lora.objects.filter(pk=lora.pk).update(is_public=False)
        Case.objects.open().filter(kind=CaseKind.LORA_PUBLISH, subject_lora_id=lora.pk).update(
            status=CaseStatus.RESOLVED, resolution=Resolution.DISMISSED,
            updated_at=timezone.now(),
        )
    lora.is_public = False
