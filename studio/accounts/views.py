from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from studio.accounts import project_cards, services
from studio.accounts.forms import (
    InvitationForm,
    MemberRoleForm,
    ProjectForm,
    SignupForm,
    TeamForm,
)
from studio.accounts.models import Invitation, Membership, Project, Role, Team
from studio.permissions import can, require
from studio.redirects import safe_next_url
from studio.throttling import signup_rate_limited


@signup_rate_limited
def signup(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome! Create a team to start generating.")
        return redirect(safe_next_url(request, request.GET.get("next"), fallback="dashboard"))
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def dashboard(request):
    teams = (
        Team.objects.for_user(request.user)
        .prefetch_related(
            Prefetch(
                "projects",
                queryset=project_cards.with_images(Project.objects.all()),
            )
        )
        .distinct()
    )
    return render(request, "accounts/dashboard.html", {"teams": teams, "team_form": TeamForm()})


@login_required
@require_POST
def team_create(request):
    form = TeamForm(request.POST)
    if not form.is_valid():
        teams = Team.objects.for_user(request.user).distinct()
        return render(
            request, "accounts/dashboard.html", {"teams": teams, "team_form": form}, status=400
        )
    team = services.team_create(user=request.user, name=form.cleaned_data["name"])
    messages.success(request, f"Team “{team.name}” created. Now add a project.")
    return redirect(team)


@login_required
def team_detail(request, team_id):
    team = require(request.user, "view", get_object_or_404(Team, pk=team_id))
    projects = project_cards.with_images(team.projects.all())
    memberships = team.memberships.select_related("user")
    invitations = [i for i in team.invitations.filter(accepted_at__isnull=True) if i.is_open()]
    ctx = {
        "team": team,
        "projects": projects,
        "memberships": memberships,
        "invitations": invitations if can(request.user, "invite", team) else [],
        "my_role": team.role_of(request.user),
        "may_create_project": can(request.user, "create_project", team),
        "may_invite": can(request.user, "invite", team),
        "may_manage_members": can(request.user, "manage_members", team),
        "project_form": ProjectForm(),
        "invitation_form": InvitationForm(),
        "roles": Role.choices,
    }
    return render(request, "accounts/team_detail.html", ctx)


@login_required
@require_POST
def project_create(request, team_id):
    team = require(request.user, "create_project", get_object_or_404(Team, pk=team_id))
    form = ProjectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The project needs a name (at most 80 characters).")
        return redirect(team)
    project = services.project_create(user=request.user, team=team, **form.cleaned_data)
    return redirect(project)


@login_required
@require_POST
def invitation_create(request, team_id):
    team = require(request.user, "invite", get_object_or_404(Team, pk=team_id))
    form = InvitationForm(request.POST)
    if form.is_valid():
        invitation = form.save(commit=False)
        invitation.team = team
        invitation.created_by = request.user
        invitation.save()
        link = request.build_absolute_uri(invitation.get_absolute_url())
        messages.success(request, f"Invitation created. Send this link: {link}")
    else:
        errors = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
        messages.error(request, f"Invitation not created. {errors}")
    return redirect(team)


def invitation_accept(request, token):
    """An invite link. Signed out, it says which team invites you and offers to sign up or
    log in, either coming back here; signed in, Accept joins the team."""
    invitation = get_object_or_404(
        Invitation.objects.select_related("team", "created_by"), token=token
    )
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            services.invitation_accept(user=request.user, invitation=invitation)
        except services.InvitationError as error:
            messages.error(request, str(error))
            return redirect("dashboard")
        messages.success(request, f"You joined {invitation.team.name}.")
        return redirect(invitation.team)
    return render(request, "accounts/invitation_accept.html", {"invitation": invitation})


@login_required
@require_POST
def invitation_revoke(request, invitation_id):
    """End an open invitation: its link stops working at once."""
    invitation = get_object_or_404(
        Invitation.objects.select_related("team"), pk=invitation_id, accepted_at__isnull=True
    )
    require(request.user, "invite", invitation.team)
    invitation.delete()
    messages.success(request, "Invitation revoked: its link no longer works.")
    return redirect(invitation.team)


@login_required
@require_POST
def member_update(request, team_id, membership_id):
    team = require(request.user, "manage_members", get_object_or_404(Team, pk=team_id))
    membership = get_object_or_404(Membership, pk=membership_id, team=team)
    if membership.role == Role.OWNER:
        messages.error(request, "The owner's role can't be changed or removed here.")
        return redirect(team)
    if request.POST.get("action") == "remove":
        services.membership_remove(membership=membership)
        messages.success(request, f"{membership.user.display_name()} was removed from the team.")
        return redirect(team)
    form = MemberRoleForm(request.POST)
    if not form.is_valid() or form.cleaned_data["role"] == Role.OWNER:
        messages.error(request, "Role must be viewer, editor or admin.")
        return redirect(team)
    membership.role = form.cleaned_data["role"]
    membership.save(update_fields=["role"])
    messages.success(request, f"{membership.user.display_name()} is now {membership.role}.")
    return redirect(team)
