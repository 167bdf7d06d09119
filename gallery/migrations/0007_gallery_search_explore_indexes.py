"""Indexes the 10,000-image PostgreSQL benchmark (gallery/bench.py) asked for.

- image_public_newest: Explore's newest-first pages and count read only public, passed,
  live images (a partial index; every database).
- GIN indexes for the galleries' prompt search, on PostgreSQL only (other databases search
  by substring). Their expressions are exactly those the search filters on
  (generation.prompt_history.full_text_search: to_tsvector of the prompt in the english
  and simple configurations), so the planner can use them.
"""

from django.db import migrations, models

CONFIGS = ("english", "simple")


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for config in CONFIGS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS image_prompt_{config} ON gallery_image USING gin "
            f"(to_tsvector('{config}'::regconfig, COALESCE(prompt, '')))"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for config in CONFIGS:
        schema_editor.execute(f"DROP INDEX IF EXISTS image_prompt_{config}")


class Migration(migrations.Migration):

    dependencies = [
        ("gallery", "0006_likes_favourites_collections"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="image",
            index=models.Index(
                condition=models.Q(
                    ("deleted_at__isnull", True),
                    ("moderation_status", "passed"),
                    ("visibility", "public"),
                ),
                fields=["-created_at", "-id"],
                name="image_public_newest",
            ),
        ),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
