import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from gallery.models import ModerationStatus
from studio.moderation import policy as matching

USER = settings.AUTH_USER_MODEL
logger = logging.getLogger(__name__)


class Policy(models.Model):
    """Blocked terms, regexes and allow-listed phrases: one site-wide policy (no team) and at
    most one per team. Lists are one entry per line."""

    team = models.OneToOneField(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="policy"
    )
    blocked_terms = models.TextField(
        blank=True,
        help_text="One per line. Whole words, any case or accents, plurals included.",
    )
    regexes = models.TextField(
        blank=True,
        help_text="One per line, matched in any case against the prompt without accents, by "
        f"RE2: at most {matching.MAX_PATTERN_LENGTH} characters; no backreferences or "
        "lookarounds; \\w and \\b are ASCII, \\pL is a letter of any script.",
    )
    allowed_terms = models.TextField(
        "allow-list",
        blank=True,
        help_text="One per line: phrases that are fine even though they contain a blocked "
        "word (false positives).",
    )
    # Image scan thresholds (a scanner's score of its unsafe labels, 0 to 1). Blank: the
    # site's (or the settings' defaults); a team's can only be stricter than the site's.
    scan_flag_at = models.FloatField(
        "flag for review at", null=True, blank=True,
        help_text="Images scoring at least this are hidden until a moderator decides.",
    )
    scan_block_at = models.FloatField(
        "block at", null=True, blank=True,
        help_text="Images scoring at least this are blocked outright.",
    )
    # Site policy only: whether a passed scan is enough to publish, or a site moderator
    # approves each public image and collection too (studio.moderation.publishing).
    publishing_needs_approval = models.BooleanField(
        "Public images and collections need a moderator's approval", default=False,
        help_text="When on, making an image or collection public asks the site moderators; "
        "it stays as it was until one approves. When off, a passed scan is enough.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "policies"
        constraints = [
            # At most one site-wide policy (NULL teams are otherwise all distinct).
            models.UniqueConstraint(
                models.functions.Coalesce("team", models.Value(0)), name="one_policy_per_scope"
            )
        ]

    def __str__(self):
        return f"Policy for {self.team.name}" if self.team_id else "Site policy"

    @property
    def scope(self):
        return self.team.name if self.team_id else "site"

    def clean(self):
        errors = {}
        for field, check in (
            ("blocked_terms", matching.check_term),
            ("allowed_terms", matching.check_term),
            ("regexes", matching.check_regex),
        ):
            lines = matching.entries(getattr(self, field))
            problems = [problem for line in lines if (problem := check(line))]
            if len(lines) > matching.MAX_ENTRIES:
                problems.insert(0, f"At most {matching.MAX_ENTRIES} entries.")
            elif field == "regexes" and (problem := matching.check_regexes_together(lines)):
                problems.append(problem)
            if problems:
                errors[field] = problems
        for field in ("scan_flag_at", "scan_block_at"):
            value = getattr(self, field)
            if value is not None and not 0 < value <= 1:
                errors[field] = ["Use a score between 0 and 1 (for example 0.6)."]
        if (
            self.scan_flag_at is not None
            and self.scan_block_at is not None
            and "scan_flag_at" not in errors
            and self.scan_flag_at > self.scan_block_at
        ):
            errors["scan_flag_at"] = ["Flag at a score no higher than the one that blocks."]
        if errors:
            raise ValidationError(errors)

    def compiled(self):
        """The lists compiled, reused while the saved policy is unchanged (every generate
        request checks the prompt, so compiling hundreds of patterns each time adds up)."""
        key = (self.pk, self.updated_at, self.scope)
        compiled = _compiled_cache.get(key) if self.pk else None
        if compiled is None:
            compiled = matching.CompiledPolicy(
                blocked_terms=self.blocked_terms,
                regexes=self.regexes,
                allowed_terms=self.allowed_terms,
                scope=self.scope,
            )
            for problem in compiled.refused_regexes:
                logger.warning("%s: a saved regex is not applied: %s", self, problem)
            if self.pk:
                if len(_compiled_cache) > 256:
                    _compiled_cache.clear()
                _compiled_cache[key] = compiled
        return compiled


_compiled_cache = {}  # (pk, updated_at, scope) -> CompiledPolicy


def policies_for(team):
    """The policies that apply in a team, the site's first."""
    scope = Q(team__isnull=True) | Q(team=team) if team is not None else Q(team__isnull=True)
    found = sorted(
        Policy.objects.filter(scope).select_related("team"), key=lambda p: p.team_id or 0
    )
    return [policy.compiled() for policy in found]


class Field(models.TextChoices):
    PROMPT = "prompt", "prompt"
    NEGATIVE_PROMPT = "negative_prompt", "negative prompt"


class PromptBlock(models.Model):
    """A prompt refused by a policy: the log repeated blocks are counted from."""

    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="prompt_blocks")
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    field = models.CharField(max_length=20, choices=Field.choices)
    term = models.CharField(max_length=300)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.user} blocked on “{self.term}” ({self.field})"


class Moderator(models.Model):
    """A site-wide moderator (no team) or a team's moderator. Superusers are site-wide
    moderators without a row."""

    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="moderator_roles")
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE,
        related_name="moderators",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "user", models.functions.Coalesce("team", models.Value(0)),
                name="one_moderator_role_per_scope",
            )
        ]

    def __str__(self):
        return f"{self.user} moderates {self.team.name if self.team_id else 'the site'}"


def is_site_moderator(user):
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return Moderator.objects.filter(user=user, team__isnull=True).exists()


def moderated_team_ids(user):
    """Teams the user moderates; None means every team (a site moderator)."""
    if is_site_moderator(user):
        return None
    if not user.is_authenticated:
        return set()
    return set(
        Moderator.objects.filter(user=user, team__isnull=False).values_list("team_id", flat=True)
    )


def is_moderator(user):
    team_ids = moderated_team_ids(user)
    return team_ids is None or bool(team_ids)


class CaseKind(models.TextChoices):
    PROMPT_REPEAT = "prompt_repeat", "Repeated blocked prompts"
    REPORT = "report", "Report"
    SCAN_FLAG = "scan_flag", "Scan flag"
    HASH_MATCH = "hash_match", "Hash match"
    APPEAL = "appeal", "Appeal"
    LORA_PUBLISH = "lora_publish", "LoRA publishing request"  # approve: it becomes public
    # An image or collection made public while the site policy wants approval.
    PUBLISH_REQUEST = "publish_request", "Publishing request"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Resolution(models.TextChoices):
    APPROVED = "approved", "Approved"
    DISMISSED = "dismissed", "Dismissed"
    WARNED = "warned", "User warned"
    BANNED = "banned", "User suspended"
    REMOVED = "removed", "Removed"
    UPHELD = "upheld", "Appeal upheld"
    DENIED = "denied", "Appeal denied"


class CaseQuerySet(models.QuerySet):
    def visible_to(self, user):
        team_ids = moderated_team_ids(user)
        if team_ids is None:
            return self
        return self.filter(team_id__in=team_ids)

    def open(self):
        return self.filter(status=CaseStatus.OPEN)

    def queue(self):
        """Everything but appeals, which have a queue of their own."""
        return self.exclude(kind=CaseKind.APPEAL)


class Case(models.Model):
    """Something for a moderator to decide, about a user and/or an image."""

    kind = models.CharField(max_length=20, choices=CaseKind.choices)
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    subject_user = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.CASCADE, related_name="moderation_cases"
    )
    subject_image_id = models.PositiveBigIntegerField(null=True, blank=True)
    subject_lora_id = models.PositiveBigIntegerField(null=True, blank=True)
    subject_collection_id = models.PositiveBigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=CaseStatus.choices, default=CaseStatus.OPEN)
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True)
    count = models.PositiveIntegerField(default=1)
    # A team moderator handed it to the site moderators (who alone may suspend).
    escalated = models.BooleanField(default=False)
    summary = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = CaseQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"Case {self.pk}: {self.get_kind_display()}"

    def snapshot(self):
        return {
            "status": self.status,
            "resolution": self.resolution,
            "count": self.count,
            "escalated": self.escalated,
            "kind": self.kind,
            "subject_user": self.subject_user_id,
            "subject_image": self.subject_image_id,
            "subject_lora": self.subject_lora_id,
            "subject_collection": self.subject_collection_id,
        }


class Standing(models.Model):
    """A user's standing with the site: warnings, a generation suspension and a publishing
    suspension (strikes set both; a moderator's ban sets the first)."""

    user = models.OneToOneField(USER, on_delete=models.CASCADE, related_name="standing")
    warnings = models.PositiveIntegerField(default=0)
    suspended_until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    # The generation suspension came from strikes (so it follows them as they expire or
    # are lifted), not from a moderator's ban (which only a moderator lifts).
    suspended_by_strikes = models.BooleanField(default=False)
    publishing_suspended_until = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Standing of {self.user}"

    def is_suspended(self, now=None):
        return self.suspended_until is not None and self.suspended_until > (now or timezone.now())

    def is_publishing_suspended(self, now=None):
        until = self.publishing_suspended_until
        return until is not None and until > (now or timezone.now())

    def snapshot(self):
        def iso(moment):
            return moment.isoformat() if moment else None

        return {
            "warnings": self.warnings,
            "suspended_until": iso(self.suspended_until),
            "publishing_suspended_until": iso(self.publishing_suspended_until),
        }


PERMANENT = timedelta(days=365 * 100)


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnly("Audit entries are never changed.")

    def delete(self):
        raise AppendOnly("Audit entries are never deleted.")

    def visible_to(self, user):
        team_ids = moderated_team_ids(user)
        if team_ids is None:
            return self
        return self.filter(team_id__in=team_ids)


class AppendOnly(Exception):
    """An attempt to change or delete an audit entry."""


class AuditEntry(models.Model):
    """One moderator action: appended, never changed or deleted."""

    actor = models.ForeignKey(USER, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=100)  # "case:12", "user:3", "policy:site"
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason_code = models.CharField(max_length=40, blank=True)
    note = models.TextField(blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"{self.action} {self.target} by {self.actor}"

    def save(self, *args, **kwargs):
        if self.pk is not None or not self._state.adding:
            raise AppendOnly("Audit entries are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("Audit entries are never deleted.")


# Images: scans, perceptual hashes, removals and strikes ---------------------------------


class ScanDecision(models.TextChoices):
    PASS = "pass", "Passed"
    FLAG = "flag", "Flagged for review"
    BLOCK = "block", "Blocked"


class ImageScan(models.Model):
    """One image's moderation scan: the scanner's per-label scores, its PDQ hash, and
    what they decided. Made once per image on the `moderation` queue."""

    image = models.OneToOneField(
        "gallery.Image", on_delete=models.CASCADE, related_name="scan", primary_key=True
    )
    scanner = models.CharField(max_length=100)  # e.g. "nudenet 3.4.2", "none"
    scores = models.JSONField(default=dict, blank=True)  # {label: 0..1}
    top_label = models.CharField(max_length=100, blank=True)
    top_score = models.FloatField(default=0)
    decision = models.CharField(max_length=10, choices=ScanDecision.choices)
    pdq_hash = models.CharField("PDQ hash", max_length=64, blank=True, db_index=True)
    pdq_quality = models.PositiveSmallIntegerField("PDQ quality", default=0)
    # The blocked hash it matched (then the decision is "block"), and how many bits apart.
    matched_hash = models.ForeignKey(
        "BlockedHash", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    match_distance = models.PositiveSmallIntegerField(null=True, blank=True)
    scanned_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Scan of image {self.image_id}: {self.decision}"

    def ranked_scores(self):
        """(label, score) pairs, highest first."""
        return sorted(self.scores.items(), key=lambda item: -item[1])

    def status_text(self):
        """What the image's project reads about its moderation (the image page)."""
        status = self.image.moderation_status
        if status == ModerationStatus.PASSED:
            decided = "passed" if self.decision == ScanDecision.PASS else "approved by a moderator"
            return f"{decided} ({self.summary()})"
        if status == ModerationStatus.FAILED and self.decision == ScanDecision.PASS:
            return "removed by a moderator"
        held = "; only this project sees it until a moderator decides" if (
            self.decision == ScanDecision.FLAG
        ) else ""
        return f"{self.get_decision_display().lower()} ({self.summary()}){held}"

    def summary(self):
        if self.matched_hash_id:
            return f"matches removed content ({self.match_distance} bits apart)"
        if not self.scores and self.scanner == "none":
            return "no classifier installed: only the hash was checked"
        if self.top_label:
            return f"{self.top_label} {self.top_score:.2f}"
        return "nothing detected"


class BlockedHash(models.Model):
    """The PDQ hash of content moderators removed: new images within
    STUDIO_HASH_MATCH_DISTANCE bits of it are blocked."""

    pdq_hash = models.CharField("PDQ hash", max_length=64, unique=True)
    source_image_id = models.PositiveBigIntegerField(null=True, blank=True)
    reason_code = models.CharField(max_length=40, blank=True)
    added_by = models.ForeignKey(USER, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Blocked hash {self.pdq_hash[:12]}…"


class RemovalQuerySet(models.QuerySet):
    def strikes(self, user, now=None):
        """The user's strikes that count now: not expired, not lifted by an appeal."""
        return self.filter(
            owner=user, restored_at__isnull=True, strike_expires_at__gt=now or timezone.now()
        )


class Removal(models.Model):
    """A moderator removed an image or a LoRA: it is out of public view, its owner was told
    why and got a strike that expires. The owner may appeal once."""

    image_id = models.PositiveBigIntegerField(null=True, blank=True)
    lora_id = models.PositiveBigIntegerField(null=True, blank=True)
    owner = models.ForeignKey(USER, null=True, on_delete=models.CASCADE, related_name="removals")
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    moderator = models.ForeignKey(USER, null=True, on_delete=models.SET_NULL, related_name="+")
    reason_code = models.CharField(max_length=40)
    note = models.TextField(blank=True)
    # What to put back if an appeal is upheld.
    before = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    strike_expires_at = models.DateTimeField()
    appeal_note = models.TextField(blank=True)
    appealed_at = models.DateTimeField(null=True, blank=True)
    appeal_case = models.OneToOneField(
        Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="appealed_removal"
    )
    restored_at = models.DateTimeField(null=True, blank=True)

    objects = RemovalQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Removal {self.pk} of {self.subject_label()}"

    def get_absolute_url(self):
        from django.urls import reverse

        return reverse("moderation_removal", args=[self.pk])

    def subject_label(self):
        return f"image #{self.image_id}" if self.image_id else f"LoRA #{self.lora_id}"

    def reason_label(self):
        from studio.moderation.services import REASON_CODES

        return dict(REASON_CODES).get(self.reason_code, self.reason_code)

    def strike_active(self, now=None):
        return self.restored_at is None and self.strike_expires_at > (now or timezone.now())

    def may_appeal(self):
        return self.appealed_at is None and self.restored_at is None


class ReportReason(models.TextChoices):
    TOS = "tos", "Breaks the terms of service"
    NSFW = "nsfw", "Sexual or explicit content"
    OWNERSHIP = "ownership", "Uses someone else's work or likeness"
    SPAM = "spam", "Spam"
    OTHER = "other", "Something else"


class Report(models.Model):
    """A signed-in user's report of an image, a LoRA or a user; reports of one item share
    one open case (its count goes up)."""

    reporter = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="reports_made")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="reports")
    reason = models.CharField(max_length=20, choices=ReportReason.choices)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Report by {self.reporter} ({self.reason})"


class Notification(models.Model):
    """A message to a user from the moderators (a removal and why, an appeal's outcome)."""

    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="notifications")
    message = models.CharField(max_length=500)
    url = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"To {self.user}: {self.message[:40]}"
