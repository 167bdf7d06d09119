"""Personal access tokens for the HTTP API, and the Idempotency-Key records of job creation."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from studio.accounts.models import Project, Role, Team


class ApiTokenQuerySet(models.QuerySet):
    def live(self):
        """Neither revoked nor expired."""
        now = timezone.now()
        return self.filter(revoked_at__isnull=True, expires_at__gt=now)


class ApiToken(models.Model):
    """A token acts for its user in one team (optionally only some of its projects), with a
    role no higher than the user's: each request gets the lower of the token's role and the
    user's role at that moment, so a demoted or removed member's tokens shrink with them.

    Only a keyed hash of the secret is stored (studio.api.tokens.digest)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_tokens")
    # Empty: every project of the team.
    projects = models.ManyToManyField(Project, blank=True, related_name="+")
    name = models.CharField(max_length=80)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.EDITOR)
    # The token's first characters, shown in lists so that a user can tell tokens apart.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    # The model of requests that name none (the A1111 and OpenAI APIs): A1111 clients set
    # it with POST /sdapi/v1/options {"sd_model_checkpoint": ...}. None: the first usable.
    default_model = models.ForeignKey(
        "generation.DiffusionModel", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def is_live(self):
        return self.revoked_at is None and self.expires_at > timezone.now()


class IdempotencyKey(models.Model):
    """A job creation under an Idempotency-Key: a retry with the same key and body gets the
    same jobs back instead of queueing again. `job_ids` is empty while the first request is
    still being worked on."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_digest = models.CharField(max_length=64)
    job_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="one_idempotency_key_per_user")
        ]

    def __str__(self):
        return f"{self.user_id}: {self.key}"
