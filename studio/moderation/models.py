from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from studio.moderation import policy as matching

USER = settings.AUTH_USER_MODEL


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
        help_text="One per line, matched against the prompt lowercased and without accents. "
        f"Keep them simple: at most {matching.MAX_PATTERN_LENGTH} characters, no nested "
        "repetition like (a+)+, no backreferences.",
    )
    allowed_terms = models.TextField(
        "allow-list",
        blank=True,
        help_text="One per line: phrases that are fine even though they contain a blocked "
        "word (false positives).",
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
            if problems:
                errors[field] = problems
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


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Resolution(models.TextChoices):
    APPROVED = "approved", "Approved"
    DISMISSED = "dismissed", "Dismissed"
    WARNED = "warned", "User warned"
    BANNED = "banned", "User suspended"


class CaseQuerySet(models.QuerySet):
    def visible_to(self, user):
        team_ids = moderated_team_ids(user)
        if team_ids is None:
            return self
        return self.filter(team_id__in=team_ids)

    def open(self):
        return self.filter(status=CaseStatus.OPEN)


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
        }


class Standing(models.Model):
    """A user's standing with the site: warnings and a generation suspension."""

    user = models.OneToOneField(USER, on_delete=models.CASCADE, related_name="standing")
    warnings = models.PositiveIntegerField(default=0)
    suspended_until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)

    def __str__(self):
        return f"Standing of {self.user}"

    def is_suspended(self, now=None):
        return self.suspended_until is not None and self.suspended_until > (now or timezone.now())

    def snapshot(self):
        until = self.suspended_until
        return {"warnings": self.warnings, "suspended_until": until.isoformat() if until else None}


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
