from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studio.accounts.models import Team
from studio.moderation.models import Moderator


class Command(BaseCommand):
    help = "Make a user a site moderator, or a team's moderator with --team; --remove undoes it."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--team", type=int, help="the team's id (default: the whole site)")
        parser.add_argument("--remove", action="store_true")

    def handle(self, *args, username, team, remove, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        scope = None
        if team is not None:
            scope = Team.objects.filter(pk=team).first()
            if scope is None:
                raise CommandError(f"No team with id {team}.")
        where = f"team {scope.name}" if scope else "the site"
        if remove:
            deleted, _ = Moderator.objects.filter(user=user, team=scope).delete()
            verb = "no longer moderates" if deleted else "did not moderate"
            self.stdout.write(f"{username} {verb} {where}.")
            return
        Moderator.objects.get_or_create(user=user, team=scope)
        self.stdout.write(f"{username} moderates {where}.")
