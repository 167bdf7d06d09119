import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from studio.accounts.models import Project


def image_upload_path(image, filename):
    # Server-chosen, unguessable names; the file is only ever served through image_file.
    return f"images/{image.project_id}/{uuid.uuid4().hex}.png"


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    job = models.ForeignKey(
        "generation.GenerationJob",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="images",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="images"
    )
    file = models.FileField(upload_to=image_upload_path, max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    seed = models.BigIntegerField()
    parameters = models.TextField(help_text="A1111-style infotext, as written into the PNG.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Image {self.pk}"

    def get_absolute_url(self):
        return reverse("image_detail", args=[self.pk])

    def file_url(self):
        return reverse("image_file", args=[self.pk])

    def alt_text(self):
        return self.prompt[:200]

    def event_payload(self):
        return {
            "id": self.pk,
            "url": self.file_url(),
            "detail_url": self.get_absolute_url(),
            "alt": self.alt_text(),
        }
