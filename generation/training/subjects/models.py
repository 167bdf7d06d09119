"""The subject library: a team's subjects (a person, a pet, a product) with the images a
DreamBooth-LoRA learns them from, and for people, the consent that allows training.

Imported by generation/models.py, so Django registers these models with the app.
"""

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from generation.loras.models import lora_name_refusal

MIN_SUBJECT_IMAGES = 3
MAX_SUBJECT_IMAGES = 30

# A rare, single word the text encoder has no meaning for, as DreamBooth's "sks".
token_validator = RegexValidator(
    r"^[a-z][a-z0-9]{2,19}$",
    "Use one word of 3 to 20 lower-case letters and digits, starting with a letter "
    "(e.g. “zxq”): a rare word the model has no meaning for.",
)
class_word_validator = RegexValidator(
    r"^[A-Za-z][A-Za-z -]{0,39}$",
    "Use a plain noun of letters, spaces or hyphens, such as “dog”, “person” or “sneaker”.",
)


def subject_image_path(image, filename):
    # Server-chosen, unguessable names; served only through subject_image_file, to members.
    return f"subjects/{image.subject.team_id}/{uuid.uuid4().hex}.png"


class Subject(models.Model):
    """Something a team trains LoRAs of: its images, a class word ("dog") and a token
    ("zxq") so that prompts call it up as "a photo of zxq dog"."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="subjects")
    name = models.CharField(max_length=80)
    class_word = models.CharField(
        max_length=40,
        validators=[class_word_validator],
        help_text="What it is, in a word or two: “dog”, “woman”, “sneaker”. Prior preservation "
        "generates images of this class.",
    )
    token = models.CharField(
        max_length=20,
        validators=[token_validator],
        help_text="A rare word that will mean this subject: prompts say “a photo of "
        "&lt;token&gt; &lt;class&gt;”.",
    )
    depicts_person = models.BooleanField(
        "depicts a real person",
        default=False,
        help_text="A person's likeness is trained only with their recorded consent.",
    )
    description = models.TextField(blank=True, max_length=1000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                "team",
                Lower("token"),
                name="one_subject_token_per_team",
                violation_error_message="Another subject of this team uses this token.",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("subject_detail", args=[self.pk])

    def instance_prompt(self):
        return f"a photo of {self.token} {self.class_word}"

    def class_prompt(self):
        return f"a photo of {self.class_word}"

    def active_consent(self):
        return self.consents.filter(revoked_at__isnull=True).first()

    def training_refusal(self):
        """Why no run may train on this subject now, or None."""
        count = self.images.count()
        if count < MIN_SUBJECT_IMAGES:
            return (
                f"“{self.name}” has {count} image{'s' if count != 1 else ''}: add at least "
                f"{MIN_SUBJECT_IMAGES} before training."
            )
        if self.depicts_person and self.active_consent() is None:
            return (
                f"“{self.name}” depicts a person: record their consent (who, when, for what) "
                "before training on their likeness."
            )
        # Checked before training, not when its LoRA joins the library hours later.
        if refusal := lora_name_refusal(self.lora_name()):
            return f"Rename “{self.name}” before training: its LoRA takes its name. {refusal}"
        return None

    def lora_name(self):
        """The name of the LoRA a run trains from it (made unique in the library with a
        -2, -3 suffix where taken)."""
        return self.name[:80]


class SubjectImage(models.Model):
    """One training image, stored clean (rebuilt from pixels, no EXIF) as PNG. Trained as a
    square: the largest centred one, unless someone placed the square by hand."""

    subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=subject_image_path, max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    caption = models.CharField(
        max_length=300,
        blank=True,
        help_text="Optional: what this image shows, with the token, e.g. “zxq dog asleep on "
        "a sofa”. Empty: the subject's prompt.",
    )
    # A manual crop: the square's left, top and side in the image's pixels. None: centred.
    crop_x = models.PositiveIntegerField(null=True, blank=True)
    crop_y = models.PositiveIntegerField(null=True, blank=True)
    crop_size = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"Image {self.pk} of {self.subject}"

    def has_manual_crop(self):
        return self.crop_size is not None

    def crop_box(self):
        """(left, top, right, bottom) of the square trained on."""
        if self.has_manual_crop():
            return (
                self.crop_x, self.crop_y, self.crop_x + self.crop_size, self.crop_y + self.crop_size
            )
        return centre_square(self.width, self.height)

    def crop_square(self):
        """The square as the crop form shows it: x, y and size."""
        left, top, right, _ = self.crop_box()
        return {"x": left, "y": top, "size": right - left}

    def crop_percent(self):
        """The crop as percentages of the image, for drawing it over the preview."""
        left, top, right, bottom = self.crop_box()
        return {
            "left": 100 * left / self.width,
            "top": 100 * top / self.height,
            "width": 100 * (right - left) / self.width,
            "height": 100 * (bottom - top) / self.height,
        }

    def training_caption(self):
        return self.caption or self.subject.instance_prompt()


def centre_square(width, height):
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


class SubjectConsent(models.Model):
    """The recorded consent of the person a subject depicts. Revoked, it is kept (who
    revoked it, when, why) and every LoRA trained from the subject is disabled."""

    subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="consents")
    given_by = models.CharField(
        "consent given by", max_length=120, help_text="The person depicted (or their guardian)."
    )
    given_on = models.DateField("date of consent")
    scope = models.TextField(
        max_length=1000,
        help_text="What they agreed to, e.g. “LoRA training for the spring campaign's "
        "internal mock-ups”.",
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    recorded_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoke_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject"],
                condition=models.Q(revoked_at__isnull=True),
                name="one_active_consent_per_subject",
            ),
        ]

    def __str__(self):
        return f"Consent of {self.given_by} for {self.subject}"
