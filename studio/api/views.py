"""The settings page for personal access tokens (the API's own views are in api.py)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from studio.accounts.models import Membership, Role
from studio.api.forms import TokenForm
from studio.api.models import ApiToken
from studio.api.tokens import may_revoke, token_create, token_revoke


def tokens_context(user, form):
    # Admins (and owners) of a team see its members' tokens too.
    admin_teams = Membership.objects.filter(
        user=user, role__in=[Role.ADMIN, Role.OWNER]
    ).values("team")
    tokens = (
        ApiToken.objects.filter(Q(user=user) | Q(team__in=admin_teams))
        .select_related("user", "team", "revoked_by")
        .prefetch_related("projects")
    )
    return {
        "form": form,
        "own_tokens": [token for token in tokens if token.user_id == user.pk],
        "team_tokens": [token for token in tokens if token.user_id != user.pk],
    }


@login_required
def token_list(request):
    """List the user's tokens (and, for team admins, the team's), and make new ones. A new
    token's secret is shown on the response to its creation and never again."""
    form = TokenForm(request.POST or None, user=request.user)
    context = {}
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                token, secret = token_create(
                    user=request.user,
                    team=form.cleaned_data["team"],
                    name=form.cleaned_data["name"],
                    role=form.cleaned_data["role"],
                    days=form.cleaned_data["days"],
                    projects=form.cleaned_data["projects"],
                )
            except ValidationError as error:
                for field, errors in error.message_dict.items():
                    form.add_error(field, errors)
            else:
                context = {"new_token": token, "secret": secret}
                status = 201
                form = TokenForm(user=request.user)
        if not form.is_valid() and form.is_bound:
            status = 422
    context.update(tokens_context(request.user, form))
    response = render(request, "api/tokens.html", context, status=status)
    # The secret must not be kept by any cache on the way.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke_view(request, token_id):
    token = ApiToken.objects.select_related("team").filter(pk=token_id).first()
    if token is None or not may_revoke(request.user, token):
        raise Http404
    token_revoke(token=token, by=request.user)
    messages.success(request, f"Token “{token.name}” revoked: it no longer works.")
    return redirect("api_tokens")
