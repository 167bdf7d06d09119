import io

from django.core.files.base import ContentFile

from gallery.metadata import a1111_infotext, format_number, png_info
from gallery.models import Image
from studio import __version__ as studio_version


def job_infotext(job, *, seed, sampler):
    return a1111_infotext(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        fields=[
            ("Steps", job.steps),
            ("Sampler", sampler),
            ("CFG scale", format_number(job.guidance_scale)),
            ("Seed", seed),
            ("Size", f"{job.width}x{job.height}"),
            ("Model", job.model.name),
            ("Version", f"studio {studio_version}"),
        ],
    )


def image_create_from_generation(*, job, pil_image, seed, sampler, scheduler_class):
    """Save one generated image as a PNG carrying its parameters, and its Image row."""
    parameters = job_infotext(job, seed=seed, sampler=sampler)
    spec = {
        "job_id": job.pk,
        "mode": "txt2img",
        "model": {"name": job.model.name, "source": job.model.source},
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "steps": job.steps,
        "guidance_scale": job.guidance_scale,
        "width": job.width,
        "height": job.height,
        "seed": seed,
        "scheduler": scheduler_class,
        "sampler": sampler,
        "version": studio_version,
    }
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
    image.file.save("generated.png", ContentFile(buffer.getvalue()), save=False)
    image.save()
    return image
