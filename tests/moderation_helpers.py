"""Moderation test helpers: textured images (PDQ rates flat ones unreliable and never
matches them) and scanners that answer fixed scores."""

import io

import numpy as np
from django.core.files.base import ContentFile
from PIL import Image as PILImage

from gallery.models import Image
from studio.moderation.scanners import ScanResult
from tests.base import make_job


def textured_picture(seed=1, size=128):
    """A PIL image with structure PDQ can hash reliably (quality well above 50)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    picture = PILImage.fromarray(blocks).resize((size, size), PILImage.Resampling.BICUBIC)
    return picture


def make_textured_image(project, user, model, seed=1, picture=None, **fields):
    job = make_job(project, user, model, **fields)
    picture = picture or textured_picture(seed)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    image = Image(
        project=project, job=job, created_by=user, width=picture.width,
        height=picture.height, prompt=job.prompt, seed=job.seed, parameters=job.prompt,
    )
    image.file.save("x.png", ContentFile(buffer.getvalue()), save=False)
    image.save()
    return image


class FixedScanner:
    """Answers `FixedScanner.scores` (set by a test) with "unsafe" the only unsafe label."""

    scores = {"unsafe": 0.0, "harmless": 0.99}

    def scan(self, picture):
        return ScanResult(
            scanner="fixed", scores=dict(self.scores), unsafe_labels=frozenset({"unsafe"})
        )


def scanning_with(score):
    """Settings and a patch that make every scan score `score` on the unsafe label."""
    from unittest import mock

    from django.test import override_settings

    return (
        override_settings(STUDIO_IMAGE_SCANNER="tests.moderation_helpers.FixedScanner"),
        mock.patch.object(FixedScanner, "scores", {"unsafe": score, "harmless": 0.99}),
    )
