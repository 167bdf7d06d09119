# The image's team, copied from its project, with an index of the team's live images
# newest first: the team grid and team search no longer read the whole image table.

import django.db.models.deletion
from django.db import migrations, models


def copy_project_teams(apps, schema_editor):
    Image = apps.get_model("gallery", "Image")
    Project = apps.get_model("accounts", "Project")
    team = Project.objects.filter(pk=models.OuterRef("project_id")).values("team_id")
    Image.objects.update(team_id=models.Subquery(team))


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
        ("gallery", "0009_image_share_recipe"),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="team",
            field=models.ForeignKey(
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.team",
            ),
        ),
        migrations.RunPython(copy_project_teams, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="image",
            name="team",
            field=models.ForeignKey(
                editable=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.team",
            ),
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(
                condition=models.Q(("deleted_at__isnull", True)),
                fields=["team", "-created_at", "-id"],
                name="image_team_live_newest",
            ),
        ),
    ]
