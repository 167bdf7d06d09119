import io

from django.core.files.base import ContentFile
from django.db import transaction

from gallery.dispatch import enqueue_thumbnails
from gallery.models import Image
from gallery.signals import image_generated
from generation.parameters_import.a1111 import recipe_infotext
from generation.parameters_import.files import png_info
from generation.parameters_import.studio import recipe_spec
from studio.storage import files_delete_on_rollback


def image_create_from_generation(*, job, pil_image, result):
    """Save one image of a GenerationResult as a PNG carrying its parameters, and its row."""
    parameters = recipe_infotext(
        job,
        seed=result.seed,
        sampler=result.sampler,
        schedule_type=result.schedule_type,
        variation_seed=result.variation_seed,
    )
    seed = result.seed
    spec = recipe_spec(job, result)
    buffer = io.BytesIO()
    pil_image.save(buffer, format="PNG", pnginfo=png_info(parameters=parameters, spec=spec))
    image = Image(
        project=job.project,
        job=job,
        created_by=job.created_by,
        width=pil_image.width,
        height=pil_image.height,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        seed=seed,
        parameters=parameters,
    )
    # Inside the job's transaction: should a later image or the commit fail, this file goes.
    with files_delete_on_rollback(image.file.storage) as written:
        image.file.save("generated.png", ContentFile(buffer.getvalue()), save=False)
        written.append(image.file.name)
        image.save()
    image_thumbnails_schedule(image=image)
    image_generated.send(sender=Image, image=image)
    return image


def image_thumbnails_schedule(*, image):
    """Thumbnails are made on the CPU queue once the image's row is committed. Robust: an
    unreachable broker skips none of the image's other hooks (the sweeper sends it again)."""
    # A lambda, not functools.partial: Django names a robust callback by its __qualname__
    # when it fails, which a partial lacks.
    transaction.on_commit(lambda: enqueue_thumbnails(image.pk), robust=True)
