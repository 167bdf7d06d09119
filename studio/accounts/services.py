from django.db import transaction
from django.utils import timezone

from studio.accounts.models import Membership, Project, Role, Team
from studio.realtime import events


@transaction.atomic
def team_create(*, user, name):
    team = Team.objects.create(name=name)
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return team


def project_create(*, user, team, name, description=""):
    return Project.objects.create(team=team, name=name, description=description, created_by=user)


def membership_remove(*, membership):
    """Remove a member from a team; their open project sockets close once it is committed."""
    user_id = membership.user_id
    membership.delete()
    transaction.on_commit(lambda: events.access_changed(user_id))


class InvitationError(Exception):
    pass


@transaction.atomic
def invitation_accept(*, user, invitation):
    """Join the invitation's team. Raises InvitationError with a reason a user can act on."""
    # Lock the row so two people opening one link can't both use it.
    invitation = type(invitation).objects.select_for_update().get(pk=invitation.pk)
    if not invitation.is_open():
        raise InvitationError("This invitation has expired or was already used.")
    if invitation.email and invitation.email.lower() != (user.email or "").lower():
        raise InvitationError(
            f"This invitation is for {invitation.email}. Sign in with that account to accept it."
        )
    membership, created = Membership.objects.get_or_create(
        team=invitation.team, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_by = user
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_by", "accepted_at"])
    return membership
