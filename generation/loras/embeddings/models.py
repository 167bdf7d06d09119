"""Each team's textual-inversion embeddings: used where a prompt names them (A1111).

Imported by generation/models.py, so Django registers the model with the app.
"""

import re
import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from generation.choices import ModelFamily

# A word of a prompt, as A1111 finds embeddings: letters, digits, "_" and "-".
EMBEDDING_NAME_RE = re.compile(r"[\w-]+")


def embedding_upload_path(embedding, filename):
    # Server-chosen, unguessable names; read by the workers only.
    return f"embeddings/{embedding.team_id}/{uuid.uuid4().hex}.safetensors"


class EmbeddingQuerySet(models.QuerySet):
    def for_team(self, team):
        return self.filter(team=team)

    def named_in(self, *texts):
        """Those whose name is a word of one of `texts` (case-sensitive, as in A1111)."""
        words = {word for text in texts for word in EMBEDDING_NAME_RE.findall(text or "")}
        return [embedding for embedding in self if embedding.name in words]


class Embedding(models.Model):
    """A textual-inversion embedding (a header-checked `.safetensors` file) in a team's
    library."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="embeddings")
    name = models.CharField(
        max_length=100, help_text="The word that calls it up in a prompt or negative prompt."
    )
    file = models.FileField(upload_to=embedding_upload_path, max_length=300)
    sha256 = models.CharField("SHA-256", max_length=64)
    size_bytes = models.BigIntegerField("size")
    family = models.CharField("base family", max_length=10, choices=ModelFamily.choices)
    layout = models.CharField(max_length=20)  # "a1111", "diffusers" or "sdxl"
    vectors = models.PositiveSmallIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = EmbeddingQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "sha256"],
                name="one_embedding_file_per_team",
                violation_error_message="This file is already in the team's embeddings.",
            ),
            models.UniqueConstraint(
                "team",
                Lower("name"),
                name="one_embedding_name_per_team",
                violation_error_message="An embedding with this name is already in the library.",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("team_embeddings", args=[self.team_id])

    def short_hash(self):
        """A1111's "TI hashes" value: the file's SHA-256, first 12 hex digits."""
        return self.sha256[:12]
