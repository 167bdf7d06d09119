import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from generation.management.commands.register_model import register_tiny_model
from generation.models import DiffusionModel, guess_source_kind
from studio.accounts.models import Membership, Project, Role, Team, User


class Command(BaseCommand):
    help = "Create the demo login, team and project, and make sure a model is registered."

    def handle(self, *args, **options):
        password = secrets.token_urlsafe(9)
        user, _ = User.objects.get_or_create(username="demo", defaults={"email": "demo@localhost"})
        user.set_password(password)
        user.save()
        team = Team.objects.filter(memberships__user=user, name="Demo team").first()
        if team is None:
            team = Team.objects.create(name="Demo team")
            Membership.objects.create(team=team, user=user, role=Role.OWNER)
        if not team.projects.exists():
            Project.objects.create(team=team, name="First project", created_by=user)

        if settings.STUDIO_DEFAULT_MODEL:
            DiffusionModel.objects.get_or_create(
                name=settings.STUDIO_DEFAULT_MODEL,
                defaults={
                    "source": settings.STUDIO_DEFAULT_MODEL,
                    "source_kind": guess_source_kind(settings.STUDIO_DEFAULT_MODEL),
                },
            )
        elif not DiffusionModel.objects.usable().exists():
            self.stdout.write("No model configured: building the tiny offline model…")
            register_tiny_model()

        self.stdout.write(
            self.style.SUCCESS(f"Demo login: username 'demo', password '{password}'")
        )
