"""A team's styles: named prompt and negative-prompt fragments, as A1111's styles.csv rows.

Imported by generation/models.py, so Django registers the model with the app.
"""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from generation.recipe import MAX_PROMPT

MAX_NAME = 64
# Where the prompt as typed goes in a style's text; without it, the style's text is appended.
PROMPT_PLACEHOLDER = "{prompt}"


class Style(models.Model):
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="styles")
    name = models.CharField(max_length=MAX_NAME)
    prompt = models.TextField(blank=True, max_length=MAX_PROMPT)
    negative_prompt = models.TextField(blank=True, max_length=MAX_PROMPT)
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
                name="one_style_name_per_team",
                violation_error_message="A style with this name is already in the library.",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("team_styles", args=[self.team_id])
