"""The one place that answers "may this user do this to this object".

Views ask through `require()`: outsiders get a 404 so they can't even learn that an
object exists; members whose role is too low get a 403.
"""

from typing import TypeVar

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404

from studio.accounts.models import ROLE_RANK, Project, Role, Team

# Who asks: request.user, signed in or not.
Asker = AbstractBaseUser | AnonymousUser
# Teams, projects, and objects that live in a project (jobs, images): `require` returns the
# object it was given.
Guarded = TypeVar("Guarded", bound=Model)

# The least role each action needs, per kind of object.
TEAM_ACTIONS: dict[str, Role] = {
    "view": Role.VIEWER,
    "create_project": Role.EDITOR,
    "invite": Role.ADMIN,
    "manage_members": Role.ADMIN,
    "manage_models": Role.ADMIN,  # the team's own settings for library models
    "manage_policy": Role.ADMIN,  # the team's prompt policy (blocked terms, allow-list)
    "manage_loras": Role.EDITOR,  # upload, edit and delete the team's LoRAs
    "manage_wildcards": Role.EDITOR,  # add, change and delete the team's wildcards
    "manage_styles": Role.EDITOR,  # add, change and delete the team's styles
    "manage_subjects": Role.EDITOR,  # subjects, their images and consent; training runs
    "delete": Role.OWNER,
}
PROJECT_ACTIONS: dict[str, Role] = {
    "view": Role.VIEWER,
    "generate": Role.EDITOR,
    "review": Role.EDITOR,  # approve or reject its images, delete any comment on them
    "delete_images": Role.EDITOR,  # soft delete, undo (gallery.deletion.services)
    "manage": Role.ADMIN,
}


def role_for(user: Asker, obj: Model) -> str | None:
    """The user's role on a team, or on a project through its team."""
    if isinstance(obj, Team):
        return obj.role_of(user)
    if isinstance(obj, Project):
        return obj.team.role_of(user)
    raise TypeError(f"no roles on {type(obj).__name__}")


def can(user: Asker, action: str, obj: Model) -> bool:
    if isinstance(obj, Team):
        needed = TEAM_ACTIONS[action]
    elif isinstance(obj, Project):
        needed = PROJECT_ACTIONS[action]
    elif hasattr(obj, "project"):
        # Objects that live in a project (jobs, images) follow the project's rules.
        return can(user, action, obj.project)
    else:
        raise TypeError(f"no permissions defined for {type(obj).__name__}")
    role = role_for(user, obj)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


def require(user: Asker, action: str, obj: Guarded) -> Guarded:
    """Return obj if the user may do action to it; else 404 for outsiders, 403 for members."""
    if can(user, action, obj):
        return obj
    if action != "view" and can(user, "view", obj):
        raise PermissionDenied(f"Your role does not allow this ({action}).")
    raise Http404
