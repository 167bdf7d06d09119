"""Who an API request acts for, and what it may do: the browser's rules
(studio.permissions), narrowed to a token's team, projects and role when it carries one."""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404
from ninja.errors import AuthenticationError

from gallery.models import Image
from generation.models import DiffusionModel, FluxTransformer, GenerationJob
from studio.accounts.models import ROLE_RANK, Membership, Project, Role, Team
from studio.api.models import ApiToken
from studio.api.tokens import token_can, token_projects
from studio.permissions import can


def request_token(request):
    """The token the request was authenticated with; None for a browser session."""
    return request.auth if isinstance(request.auth, ApiToken) else None


def allowed(request, action, obj):
    token = request_token(request)
    if token is not None:
        return token_can(token, action, obj)
    return can(request.user, action, obj)


def token_allows_now(token_id, action, obj):
    """token_can with the token read again: revoked, expired or its user deactivated since
    it was last read, it allows nothing. For streams that outlive the request's check."""
    token = (
        ApiToken.objects.live().select_related("user", "team")
        .filter(pk=token_id, user__is_active=True).first()
    )
    return token is not None and token_can(token, action, obj)


def may_still_view(request, project):
    """Whether the caller may see the project now: the token, the user, their membership and
    the project read again (a long stream's check when its caller's access changed)."""
    project = Project.objects.select_related("team").filter(pk=project.pk).first()
    if project is None:
        return False
    token = request_token(request)
    if token is not None:
        return token_allows_now(token.pk, "view", project)
    user = get_user_model().objects.filter(pk=request.user.pk, is_active=True).first()
    return user is not None and can(user, "view", project)


def require(request, action, obj):
    """obj if the caller may do `action` to it; else 404 for outsiders, 403 for members (as
    studio.permissions.require)."""
    if allowed(request, action, obj):
        return obj
    if action != "view" and allowed(request, "view", obj):
        raise PermissionDenied(f"Your role (or the token's) does not allow this ({action}).")
    raise Http404


def visible_projects(request):
    token = request_token(request)
    if token is not None:
        return token_projects(token)
    return Project.objects.for_user(request.user)


def visible_teams(request):
    token = request_token(request)
    if token is not None:
        return Team.objects.filter(pk=token.team_id, memberships__user=request.user)
    return Team.objects.for_user(request.user)


def by_id(queryset, object_id):
    """The row with this id, or 404 (ids past 18 digits are unknown, not a 500)."""
    found = queryset.filter(pk=object_id).first() if 0 < object_id < 10**18 else None
    if found is None:
        raise Http404
    return found


def project_for(request, project_id, action):
    role = Membership.objects.filter(team=OuterRef("team"), user=request.user).values("role")
    project = by_id(
        Project.objects.select_related("team").annotate(caller_role=Subquery(role[:1])),
        project_id,
    )
    # The caller's role came with the project: remembered on its team (Team.role_of), the
    # permission checks read no membership of their own.
    project.team.__dict__.setdefault("_roles", {})[request.user.pk] = project.caller_role
    return require(request, action, project)


def team_for(request, team_id, action):
    return require(request, action, by_id(Team.objects.all(), team_id))


def job_for(request, job_id, action):
    jobs = GenerationJob.objects.select_related("project__team", "created_by", "model")
    job = by_id(jobs, job_id)
    require(request, action, job.project)
    return job


def image_for(request, image_id):
    image = by_id(Image.objects.select_related("project__team", "job__model"), image_id)
    require(request, "view", image.project)
    return image


def require_write(request):
    """A change (not generation) that the browser allows any member to ask for: a token
    needs at least the editor role for it."""
    token = request_token(request)
    if token is not None and ROLE_RANK[token.role] < ROLE_RANK[Role.EDITOR]:
        raise PermissionDenied("This token's role (viewer) only reads.")


def token_of(request) -> ApiToken:
    """The request's token, on the routes that only tokens authenticate."""
    token = request_token(request)
    if token is None:
        raise AuthenticationError(401, "A token is required.")
    return token


def token_project(request, action="generate"):
    """Where the A1111 and OpenAI APIs, which know no projects, work: the token's first
    project (by id) in which it may `action` (a token limited to one project picks it)."""
    for project in visible_projects(request).select_related("team").order_by("pk"):
        if allowed(request, action, project):
            return project
    raise PermissionDenied(f"This token may {action} in none of its team's projects.")


def checkpoints(request, project):
    return DiffusionModel.objects.available_to(request.user, project).order_by("name")


def default_checkpoint(request, models):
    """Of `models` (a list of checkpoints by name), the token's default model, else the
    first that makes images from text alone, as the studio's form starts on one
    (DiffusionModelQuerySet.default): not a FLUX.1 Fill, Depth or Canny model."""
    default = token_of(request).default_model
    if default is not None and default in models:
        return default
    if not models:
        raise PermissionDenied("No model is available to you in this project.")
    return min(models, key=lambda model: model.flux_transformer != FluxTransformer.STANDARD)
