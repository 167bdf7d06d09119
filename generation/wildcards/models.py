"""A team's wildcards: named lists of prompt fragments, one picked where a prompt says
`__name__`.

Imported by generation/models.py, so Django registers the model with the app.
"""

import re

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

# Folders as the extension's wildcard files have them ("animals/cats"): words joined by "/".
WILDCARD_NAME_RE = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
MAX_NAME = 64
MAX_VALUES = 1000
MAX_VALUE_LENGTH = 500
# A prompt with `__*__` loads every wildcard of its team in the web request that queues it:
# these bound that load (about 1 MB of text).
MAX_WILDCARDS_PER_TEAM = 500
MAX_TEAM_WILDCARD_CHARACTERS = 1_000_000


class Wildcard(models.Model):
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="wildcards")
    name = models.CharField(max_length=MAX_NAME)
    # One fragment per line, as in a wildcard .txt file.
    values = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                "team",
                Lower("name"),
                name="one_wildcard_name_per_team",
                violation_error_message="A wildcard with this name is already in the library.",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("team_wildcards", args=[self.team_id])

    def value_list(self):
        return value_lines(self.values)


def value_lines(text):
    """The fragments of a wildcard's text: its non-empty lines, trimmed; `#` starts a comment
    line, as in the extension's files."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]
