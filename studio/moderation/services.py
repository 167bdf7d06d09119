"""Moderation workflows: screening a generation request, logging blocks, cases, actions."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from generation.admission import Refused
from studio.moderation.models import (
    PERMANENT,
    AuditEntry,
    Case,
    CaseKind,
    CaseStatus,
    Field,
    PromptBlock,
    Resolution,
    Standing,
    policies_for,
)
from studio.moderation.policy import find_matches
from studio.moderation.scanning import UploadBlocked, upload_screen

REPEAT_BLOCKS = 3  # blocks by one user within REPEAT_WINDOW open a case
REPEAT_WINDOW = timedelta(hours=1)


class GenerationRefused(Refused):
    """Moderation refuses this generation request; the message says why."""


class PromptBlocked(GenerationRefused):
    def __init__(self, *, field, term):
        self.field, self.term = field, term
        super().__init__(
            f"The {Field(field).label} contains “{term}”, which this studio does not allow. "
            "Rephrase it and try again."
        )


class UserSuspended(GenerationRefused):
    def __init__(self, standing):
        self.standing = standing
        until = standing.suspended_until
        when = "further notice" if until - timezone.now() > PERMANENT / 2 else (
            timezone.localtime(until).strftime("%Y-%m-%d %H:%M %Z")
        )
        reason = f" Reason: {standing.reason}." if standing.reason else ""
        super().__init__(
            f"Your account may not generate images until {when}.{reason} "
            "Contact the moderators if you think this is a mistake."
        )


def prompt_check(*, team, prompt, negative_prompt=""):
    """(field, match) of the first blocked term in the prompt, then the negative prompt;
    None when both pass."""
    policies = policies_for(team)
    if not policies:
        return None
    for field, text in ((Field.PROMPT, prompt), (Field.NEGATIVE_PROMPT, negative_prompt)):
        found = find_matches(text or "", policies)
        if found:
            return field, found[0]
    return None


def suspension_check(*, user):
    standing = Standing.objects.filter(user=user).first()
    if standing is not None and standing.is_suspended():
        raise UserSuspended(standing)


def generation_screen(*, user, project, prompt, negative_prompt=""):
    """Raise UserSuspended or PromptBlocked (logged; repeats open a case), else return."""
    suspension_check(user=user)
    hit = prompt_check(team=project.team, prompt=prompt, negative_prompt=negative_prompt)
    if hit is None:
        return
    field, match = hit
    prompt_block_log(
        user=user, team=project.team, field=field, term=match.term,
        text=prompt if field == Field.PROMPT else negative_prompt,
    )
    raise PromptBlocked(field=field, term=match.term)


def screen_generation_form(form, cleaned):
    """GenerationForm.clean's hook: uploaded images against the blocklist, as form errors on
    their fields. The prompts, as typed and as each job will run them, and the user's
    standing are screened once by the job services (generation_screen, a prompt check), whose
    refusal the views and the API turn into an error on the field it names."""
    if form.user is None or form.project is None or not form.user.is_authenticated:
        return
    for field in UPLOAD_FIELDS:
        picture = cleaned.get(field)
        if picture is None or not hasattr(picture, "getbands"):
            continue
        try:
            upload_screen(
                user=form.user, team=form.project.team, picture=picture,
                what=f"The {form.fields[field].label.lower()}",
            )
        except UploadBlocked as blocked:
            form.add_error(field, str(blocked))


# The generate form's uploaded images (PIL images once cleaned) that are checked against
# the blocklist of removed content; the painted mask carries no content of its own.
UPLOAD_FIELDS = ("source_upload", "control_upload", "ip_adapter_upload")


def prompt_block_log(*, user, team, field, term, text):
    """Log a block; the REPEAT_BLOCKS-th within REPEAT_WINDOW opens a case, later ones
    while it is open add to its count. Callers screen before their own transaction, so
    a refused request's rollback never takes the log with it."""
    now = timezone.now()
    with transaction.atomic():
        block = PromptBlock.objects.create(
            user=user, team=team, field=field, term=term[:300], text=text, created_at=now
        )
        recent = PromptBlock.objects.filter(
            user=user, team=team, created_at__gte=now - REPEAT_WINDOW
        ).count()
        case = (
            Case.objects.select_for_update()
            .filter(kind=CaseKind.PROMPT_REPEAT, subject_user=user, team=team)
            .open()
            .first()
        )
        summary = f"Latest: “{term}” in the {Field(field).label}."
        if case is not None:
            case.count += 1
            case.summary = summary
            case.updated_at = now
            case.save(update_fields=["count", "summary", "updated_at"])
        elif recent >= REPEAT_BLOCKS:
            Case.objects.create(
                kind=CaseKind.PROMPT_REPEAT, subject_user=user, team=team, count=recent,
                summary=summary, created_at=now, updated_at=now,
            )
    return block


def audit(*, actor, action, target, team=None, reason_code="", note="", before=None, after=None):
    return AuditEntry.objects.create(
        actor=actor, action=action, target=target, team=team, reason_code=reason_code,
        note=note, before=before or {}, after=after or {},
    )


REASON_CODES = [
    ("tos", "Against the terms of service"),
    ("nsfw", "Sexual or explicit content"),
    ("violence", "Violence or gore"),
    ("harassment", "Harassment or hate"),
    ("spam", "Spam"),
    ("false_positive", "False positive"),
    ("other", "Other"),
]
BAN_DAYS = [(1, "1 day"), (7, "7 days"), (30, "30 days"), (0, "Until lifted")]


def case_resolve(*, case, moderator, action, reason_code, note="", days=7):
    """Resolve an open case: approve, dismiss, warn or ban its user; audited."""
    if case.status != CaseStatus.OPEN:
        raise ValueError("This case is already resolved.")
    if action in ("warn", "ban") and case.subject_user_id is None:
        raise ValueError("This case has no user to warn or suspend.")
    resolution = {
        "approve": Resolution.APPROVED,
        "dismiss": Resolution.DISMISSED,
        "warn": Resolution.WARNED,
        "ban": Resolution.BANNED,
    }[action]
    with transaction.atomic():
        before = case.snapshot()
        case.status = CaseStatus.RESOLVED
        case.resolution = resolution
        case.updated_at = timezone.now()
        case.save(update_fields=["status", "resolution", "updated_at"])
        audit(
            actor=moderator, action=f"case.{action}", target=f"case:{case.pk}", team=case.team,
            reason_code=reason_code, note=note, before=before, after=case.snapshot(),
        )
        if action in ("warn", "ban"):
            user_sanction(
                user=case.subject_user, moderator=moderator, action=action,
                reason_code=reason_code, note=note, days=days, team=case.team,
            )
    return case


def case_escalate(*, case, moderator, reason_code, note=""):
    """Hand an open case to the site moderators; it stays open. Audited."""
    if case.status != CaseStatus.OPEN:
        raise ValueError("This case is already resolved.")
    if case.escalated:
        raise ValueError("This case is already with the site moderators.")
    with transaction.atomic():
        before = case.snapshot()
        case.escalated = True
        case.updated_at = timezone.now()
        case.save(update_fields=["escalated", "updated_at"])
        audit(
            actor=moderator, action="case.escalate", target=f"case:{case.pk}", team=case.team,
            reason_code=reason_code, note=note, before=before, after=case.snapshot(),
        )
    return case


def suspension_lift(*, user, moderator, reason_code, note=""):
    """End a user's suspensions (generating and publishing) now. Audited."""
    with transaction.atomic():
        standing = Standing.objects.select_for_update().get(user=user)
        before = standing.snapshot()
        standing.suspended_until = None
        standing.publishing_suspended_until = None
        standing.suspended_by_strikes = False
        standing.reason = ""
        standing.save(update_fields=[
            "suspended_until", "publishing_suspended_until", "suspended_by_strikes", "reason",
        ])
        audit(
            actor=moderator, action="user.unsuspend", target=f"user:{user.pk}",
            reason_code=reason_code, note=note, before=before, after=standing.snapshot(),
        )
    return standing


def user_sanction(*, user, moderator, action, reason_code, note="", days=7, team=None):
    """Warn a user, or suspend their generating for `days` (0: until lifted); audited."""
    standing, _ = Standing.objects.select_for_update().get_or_create(user=user)
    before = standing.snapshot()
    label = dict(REASON_CODES).get(reason_code, reason_code)
    if action == "warn":
        standing.warnings += 1
    else:
        standing.suspended_until = timezone.now() + (timedelta(days=days) if days else PERMANENT)
        standing.reason = label
    standing.save()
    audit(
        actor=moderator, action=f"user.{action}", target=f"user:{user.pk}", team=team,
        reason_code=reason_code, note=note, before=before, after=standing.snapshot(),
    )
    return standing
