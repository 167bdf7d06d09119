import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.db import transaction

from gallery.dispatch import enqueue_thumbnails
from gallery.models import Image
from gallery.signals import image_generated
from generation.parameters_import.a1111 import recipe_infotext
from generation.parameters_import.files import png_info
from generation.parameters_import.studio import recipe_spec
from studio.storage import files_delete_on_rollback

# Threads a job's PNGs are compressed on (a batch of 8 images: 4 at once).
PNG_THREADS = 4


@dataclass(frozen=True)
class GeneratedPng:
    """One generated image as the PNG the gallery keeps (its parameters in its text chunks)."""

    data: bytes
    width: int
    height: int
    seed: int
    parameters: str


def generated_pngs(*, job, images) -> list[GeneratedPng]:
    """`images` ((PIL image, its GenerationResult) pairs) encoded, in order: the parameters
    are written on this thread (they read the database), the PNGs compressed on a few
    threads at once (zlib lets go of the GIL). Called before the job's finishing
    transaction, so that transaction, which holds the job's row, only writes files and rows."""
    described = []
    for pil_image, result in images:
        parameters = recipe_infotext(
            job,
            seed=result.seed,
            sampler=result.sampler,
            schedule_type=result.schedule_type,
            variation_seed=result.variation_seed,
        )
        described.append((pil_image, result.seed, parameters, recipe_spec(job, result)))

    def encoded(item):
        pil_image, seed, parameters, spec = item
        buffer = io.BytesIO()
        pil_image.save(buffer, format="PNG", pnginfo=png_info(parameters=parameters, spec=spec))
        return GeneratedPng(buffer.getvalue(), pil_image.width, pil_image.height, seed, parameters)

    if len(described) < 2:
        return [encoded(item) for item in described]
    with ThreadPoolExecutor(max_workers=min(PNG_THREADS, len(described))) as pool:
        return list(pool.map(encoded, described))


def image_create_from_png(*, job, png: GeneratedPng):
    """The gallery's image of one of `job`'s generated PNGs: its file and its row."""
    image = Image(
        project=job.project,
        job=job,
        created_by=job.created_by,
        width=png.width,
        height=png.height,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        seed=png.seed,
        parameters=png.parameters,
    )
    # Inside the job's transaction: should a later image or the commit fail, this file goes.
    with files_delete_on_rollback(image.file.storage) as written:
        image.file.save("generated.png", ContentFile(png.data), save=False)
        written.append(image.file.name)
        image.save()
    image_thumbnails_schedule(image=image)
    image_generated.send(sender=Image, image=image)
    return image


def image_create_from_generation(*, job, pil_image, result):
    """Save one image of a GenerationResult as a PNG carrying its parameters, and its row."""
    (png,) = generated_pngs(job=job, images=[(pil_image, result)])
    return image_create_from_png(job=job, png=png)


def image_thumbnails_schedule(*, image):
    """Thumbnails are made on the CPU queue once the image's row is committed. Robust: an
    unreachable broker skips none of the image's other hooks (the sweeper sends it again)."""
    # A lambda, not functools.partial: Django names a robust callback by its __qualname__
    # when it fails, which a partial lacks.
    transaction.on_commit(lambda: enqueue_thumbnails(image.pk), robust=True)
