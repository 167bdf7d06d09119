"""The LoRA library: each team's LoRAs, and the LoRAs (with weights) each job used.

Imported by generation/models.py, so Django registers these models with the app.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from generation.choices import ModelFamily

LORA_NAME_FORBIDDEN = "<>:"  # the prompt's <lora:name:weight> syntax needs them


def lora_name_refusal(name):
    """Why `name` can't name a LoRA, or None (the rule uploads, edits and training share)."""
    bad = sorted({char for char in name if char in LORA_NAME_FORBIDDEN})
    if bad:
        return (
            f"A LoRA's name can't contain {' '.join(bad)}: the prompt calls it "
            "<lora:name:weight>."
        )
    return None


def lora_upload_path(lora, filename):
    # Server-chosen, unguessable names; served only through lora_file, to team members.
    return f"loras/{lora.team_id}/{uuid.uuid4().hex}.safetensors"


class LoraQuerySet(models.QuerySet):
    def for_team(self, team):
        return self.filter(team=team)

    def search(self, text="", family=""):
        """The library list's search (name, description or trigger words contain `text`)
        and family filter."""
        found = self
        if text:
            found = found.filter(
                models.Q(name__icontains=text)
                | models.Q(description__icontains=text)
                | models.Q(trigger_words__icontains=text)
            )
        if family:
            found = found.filter(family=family)
        return found

    def enabled(self):
        return self.filter(disabled_reason="")

    def with_usage(self):
        return self.annotate(usage_count=models.Count("job_uses__job", distinct=True))


class Lora(models.Model):
    """A LoRA (a `.safetensors` file, header-checked at upload) in a team's library."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="loras")
    name = models.CharField(
        max_length=100,
        help_text="What the prompt calls it: <lora:name:weight>.",
    )
    description = models.TextField(blank=True, max_length=2000)
    file = models.FileField(upload_to=lora_upload_path, max_length=300)
    sha256 = models.CharField("SHA-256", max_length=64)
    # What A1111 and Civitai know it by (lora_files.a1111_lora_hash); blank for LoRAs added
    # before it was kept, until an image records it (lora_services.lora_hashes).
    addnet_hash = models.CharField("A1111 hash", max_length=64, blank=True)
    size_bytes = models.BigIntegerField("size")
    family = models.CharField("base family", max_length=10, choices=ModelFamily.choices)
    layout = models.CharField(max_length=20, blank=True)  # "kohya", "diffusers" or "xlabs"
    rank = models.PositiveIntegerField(null=True, blank=True)
    alpha = models.FloatField(null=True, blank=True)
    trigger_words = models.CharField(
        max_length=500, blank=True, help_text="Comma-separated words that call up its style."
    )
    resolution = models.CharField("training resolution", max_length=20, blank=True)
    base_model = models.CharField("trained on", max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    default_weight = models.FloatField(default=1.0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Shown to everyone once moderators approve it (not yet offered).
    is_public = models.BooleanField(default=False)
    # Why it may no longer be used (e.g. the consent for its subject was revoked); blank:
    # usable. Disabled LoRAs leave the picker and jobs naming them are refused.
    disabled_reason = models.CharField(max_length=300, blank=True)

    objects = LoraQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "sha256"],
                name="one_lora_file_per_team",
                violation_error_message="This file is already in the team's library.",
            ),
            models.UniqueConstraint(
                "team",
                Lower("name"),
                name="one_lora_name_per_team",
                violation_error_message="A LoRA with this name is already in the library.",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("lora_detail", args=[self.pk])

    def short_hash(self):
        """The file's SHA-256, first 12 hex digits."""
        return self.sha256[:12]

    def trigger_word_list(self):
        return [word.strip() for word in self.trigger_words.split(",") if word.strip()]

    def default_weight_label(self):
        return format_weight(self.default_weight)

    def alpha_label(self):
        return "" if self.alpha is None else format_weight(self.alpha)

    def prompt_tag(self, weight=None):
        weight = self.default_weight if weight is None else weight
        return f"<lora:{self.name}:{format_weight(weight)}>"


def format_weight(weight):
    return f"{weight:g}"


class JobLora(models.Model):
    """A LoRA a job applies, with its weight; name and hash are kept should the LoRA
    leave the library. `in_prompt`: written as <lora:…> in the prompt, not picked."""

    job = models.ForeignKey(
        "generation.GenerationJob", on_delete=models.CASCADE, related_name="job_loras"
    )
    lora = models.ForeignKey(
        Lora, on_delete=models.SET_NULL, null=True, blank=True, related_name="job_uses"
    )
    name = models.CharField(max_length=100)
    sha256 = models.CharField("SHA-256", max_length=64)
    weight = models.FloatField()
    position = models.PositiveSmallIntegerField()
    in_prompt = models.BooleanField(default=False)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="one_lora_per_job_position")
        ]

    def __str__(self):
        return f"{self.name} at {self.weight:g} in job {self.job_id}"

    def short_hash(self):
        return self.sha256[:12]

    def weight_label(self):
        return format_weight(self.weight)
