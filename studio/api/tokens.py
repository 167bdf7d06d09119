"""Personal access tokens: making them, finding the one a request carries, and what it may do.

A token is 256 random bits; only an HMAC-SHA256 of it (keyed with SECRET_KEY) is stored. A
fast keyed hash is right for secrets with that much entropy: nothing can be guessed, and
each API request checks its token in microseconds, not in the password hasher's half
second. Rotating SECRET_KEY invalidates every token.
"""

import secrets
from datetime import timedelta
from functools import partial

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.crypto import salted_hmac

from studio.accounts.models import ROLE_RANK, Project, Role, Team
from studio.api.models import ApiToken
from studio.permissions import PROJECT_ACTIONS, TEAM_ACTIONS, can
from studio.realtime import events

TOKEN_PREFIX = "stu_"
# Shown in token lists: the fixed prefix and a few random characters.
SHOWN_CHARACTERS = len(TOKEN_PREFIX) + 6
MAX_DAYS = 366
# last_used_at is written at most this often per token: not a write on every request.
LAST_USE_RESOLUTION = timedelta(minutes=1)


def digest(secret):
    return salted_hmac("studio.api.tokens", secret, algorithm="sha256").hexdigest()


def token_create(*, user, team, name, role, days, projects=()):
    """A new token and its secret, the only time the secret exists in the clear.

    Refuses (ValidationError naming the field) a team the user is not in, projects of
    another team, a role above the user's own and an expiry outside 1..MAX_DAYS days."""
    user_role = team.role_of(user)
    if user_role is None:
        raise ValidationError({"team": "You are not a member of this team."})
    if role not in ROLE_RANK:
        raise ValidationError({"role": f"Unknown role {role!r}: one of {', '.join(Role.values)}."})
    if ROLE_RANK[role] > ROLE_RANK[user_role]:
        raise ValidationError(
            {"role": f"A token's role can't be above yours ({Role(user_role).label})."}
        )
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError({"days": f"A token expires after 1 to {MAX_DAYS} days."})
    projects = list(projects)
    if any(project.team_id != team.pk for project in projects):
        raise ValidationError({"projects": f"Pick only projects of {team.name}."})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            team=team,
            name=name.strip() or "API token",
            role=role,
            prefix=secret[:SHOWN_CHARACTERS],
            digest=digest(secret),
            expires_at=timezone.now() + timedelta(days=days),
        )
        token.projects.set(projects)
    return token, secret


def token_for_secret(secret):
    """The live token a secret belongs to, its use recorded; None for anything else."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.live()
        .select_related("user", "team")
        # Most tokens are not limited to projects: then project_ids needs no query of its own.
        .annotate(has_projects=Exists(
            ApiToken.projects.through.objects.filter(apitoken=OuterRef("pk"))
        ))
        .filter(digest=digest(secret), user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USE_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def may_revoke(user, token):
    """The token's owner, or an admin of its team."""
    return token.user_id == user.pk or can(user, "manage_members", token.team)


def token_revoke(*, token, by):
    """Revoked at once: the next request with it is refused, and the streams and sockets
    open with it close (their user's are told to check their access again)."""
    if not may_revoke(by, token):
        raise ValidationError("Only the token's owner or a team admin may revoke it.")
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=by
    )
    transaction.on_commit(partial(events.access_changed, token.user_id))


def project_ids(token):
    """The projects a token is limited to; None: all of its team's."""
    if "_project_ids" not in token.__dict__:
        # `has_projects`: token_for_secret's annotation, where the token came from there.
        limited = getattr(token, "has_projects", True)
        ids = set(token.projects.values_list("pk", flat=True)) if limited else set()
        token.__dict__["_project_ids"] = ids or None
    return token.__dict__["_project_ids"]


def token_can(token, action, obj):
    """studio.permissions.can for a request made with `token`: the object must be in the
    token's team (and projects), and both the token's role and its user's current role must
    allow the action."""
    if isinstance(obj, Team):
        team_id, project_id, needed = obj.pk, None, TEAM_ACTIONS[action]
    elif isinstance(obj, Project):
        team_id, project_id, needed = obj.team_id, obj.pk, PROJECT_ACTIONS[action]
    elif hasattr(obj, "project"):
        return token_can(token, action, obj.project)
    else:
        raise TypeError(f"no permissions defined for {type(obj).__name__}")
    if team_id != token.team_id:
        return False
    allowed = project_ids(token)
    if project_id is not None and allowed is not None and project_id not in allowed:
        return False
    return ROLE_RANK[token.role] >= ROLE_RANK[needed] and can(token.user, action, obj)


def token_projects(token):
    """The projects a token may see, as a queryset."""
    projects = Project.objects.for_user(token.user).filter(team=token.team)
    allowed = project_ids(token)
    return projects if allowed is None else projects.filter(pk__in=allowed)
