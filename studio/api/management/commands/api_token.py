"""Make a personal access token for a user; the token is the last line printed."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from studio.accounts.models import Project, Role, Team, User
from studio.api.tokens import token_create


class Command(BaseCommand):
    help = (
        "Create an API token for USERNAME and print it on the last line. Without --team or "
        "--project: the user's first team. The role defaults to the user's own in the team."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--team", type=int, help="The team's id.")
        parser.add_argument(
            "--project", type=int, action="append", default=[],
            help="Limit the token to this project (repeat for several); sets the team.",
        )
        parser.add_argument("--name", default="API token")
        parser.add_argument("--role", choices=Role.values, help="At most the user's own role.")
        parser.add_argument("--days", type=int, default=90, help="Days until it expires.")

    def handle(self, *args, username, team, project, name, role, days, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        projects = list(Project.objects.filter(pk__in=project).select_related("team"))
        missing = set(project) - {item.pk for item in projects}
        if missing:
            raise CommandError(f"No project with id {', '.join(map(str, sorted(missing)))}.")
        if team is None and projects:
            team = projects[0].team_id
        teams = Team.objects.for_user(user).order_by("pk")
        chosen = teams.filter(pk=team).first() if team is not None else teams.first()
        if chosen is None:
            raise CommandError(
                f"{username} is not in team {team}." if team else f"{username} is in no team."
            )
        try:
            token, secret = token_create(
                user=user, team=chosen, name=name, role=role or chosen.role_of(user),
                days=days, projects=projects,
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stderr.write(
            f"Token “{token.name}” for {username} in {chosen.name} as {token.role}, "
            f"expires {token.expires_at:%Y-%m-%d}:"
        )
        self.stdout.write(secret)
