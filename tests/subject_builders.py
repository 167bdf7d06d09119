"""Subjects with images, and training runs, for the subject and training tests."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from generation.training.models import TrainingRun
from generation.training.subjects.models import Subject
from generation.training.subjects.services import subject_images_add


def image_bytes(size=(320, 256), colour=(200, 80, 40), format="PNG", **save_options):
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, format=format, **save_options)
    return buffer.getvalue()


def image_upload(name="photo.png", **options):
    return SimpleUploadedFile(name, image_bytes(**options))


def make_subject(team, user, name="Rex", token="zxq", class_word="dog", images=3,
                 depicts_person=False, size=(320, 256)):
    subject = Subject.objects.create(
        team=team, name=name, token=token, class_word=class_word, created_by=user,
        depicts_person=depicts_person,
    )
    if images:
        subject_images_add(
            subject=subject, user=user,
            uploads=[image_upload(f"{n}.png", size=size, colour=(40 * n, 90, 200 - 30 * n))
                     for n in range(images)],
        )
    return subject


def make_run(subject, project, user, model, **fields):
    params = {
        "steps": 4, "learning_rate": 1e-4, "rank": 4, "resolution": 64, "batch_size": 1,
        "seed": 1, "sample_prompt": subject.instance_prompt(), **fields,
    }
    return TrainingRun.objects.create(
        subject=subject, project=project, created_by=user, model=model, **params
    )
