import io
from importlib import metadata

from django.core.files.base import ContentFile
from django.db import transaction

from gallery.dispatch import enqueue_thumbnails
from gallery.metadata import a1111_infotext, format_number, png_info
from gallery.models import Image
from generation.loras.embeddings.services import job_embeddings, ti_hashes
from generation.loras.services import infotext_prompt, lora_hashes
from generation.model_hashes import model_hash_backfill
from generation.models import OUTPAINT_SIDES
from gpu_workers.samplers import infotext_schedule_type
from studio import __version__ as studio_version
from studio.moderation.scanning import image_scan_schedule
from studio.storage import files_delete_on_rollback


def library_versions():
    """What made the image, for reproducing it; read from package metadata (no torch import)."""
    versions = {"studio": studio_version}
    for package in ("diffusers", "torch", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def denoising_strength(job):
    """A1111 writes one: the hires pass's when there is one, else that of the image mode."""
    if job.has_hires_fix():
        return format_number(job.hires_strength)
    if job.mode == "outpaint":
        return "1"  # what it adds is drawn from noise
    if job.mode != "txt2img":
        return format_number(job.strength)
    return None


def controlnet_infotext(job):
    """A1111's ControlNet extension's unit, as it writes it (quoted by a1111_infotext)."""
    if job.control_model_id is None:
        return None
    return ", ".join(
        f"{name}: {value}"
        for name, value in [
            ("Module", "canny"),
            ("Model", job.control_model.name),
            ("Weight", format_number(job.control_scale)),
            ("Resize Mode", "Just Resize"),
            ("Threshold A", job.control_low_threshold),
            ("Threshold B", job.control_high_threshold),
            ("Guidance Start", 0),
            ("Guidance End", 1),
        ]
    )


def ip_adapter_infotext(job):
    """The IP-Adapter as A1111's ControlNet extension writes it: one more unit, whose
    module names the CLIP image encoder's preprocessor."""
    if job.ip_adapter_model_id is None:
        return None
    family = "sdxl" if job.ip_adapter_model.family == "sdxl" else "sd15"
    return ", ".join(
        f"{name}: {value}"
        for name, value in [
            ("Module", f"ip-adapter_clip_{family}"),
            ("Model", job.ip_adapter_model.name),
            ("Weight", format_number(job.ip_adapter_scale)),
            ("Resize Mode", "Crop and Resize"),
            ("Guidance Start", 0),
            ("Guidance End", 1),
        ]
    )


def controlnet_units(job):
    """A1111's "ControlNet 0", "ControlNet 1": the ControlNet first, then the IP-Adapter."""
    units = [unit for unit in (controlnet_infotext(job), ip_adapter_infotext(job)) if unit]
    return [(f"ControlNet {number}", unit) for number, unit in enumerate(units)]


def job_infotext(job, *, seed, sampler, schedule_type=None, variation_seed=None):
    """A1111's infotext, its fields in A1111's order (modules/processing.py
    create_infotext)."""
    job_loras = list(job.job_loras.all())
    model_hash_backfill(model=job.model)
    embeddings = job_embeddings(job)
    return a1111_infotext(
        prompt=infotext_prompt(job.prompt, job_loras),
        negative_prompt=job.negative_prompt,
        fields=[
            ("Steps", job.steps),
            ("Sampler", sampler),
            ("Schedule type", infotext_schedule_type(sampler, schedule_type)),
            ("CFG scale", format_number(job.guidance_scale)),
            ("Seed", seed),
            ("Size", f"{job.width}x{job.height}"),
            ("Model hash", job.model.a1111_hash()),
            ("Model", job.model.name),
            ("Variation seed", variation_seed if job.variation_strength else None),
            (
                "Variation seed strength",
                format_number(job.variation_strength) if job.variation_strength else None,
            ),
            ("Denoising strength", denoising_strength(job)),
            ("Clip skip", job.clip_skip if job.clip_skip > 1 else None),
            ("Hires upscale", format_number(job.hires_scale) if job.has_hires_fix() else None),
            # Only when set: 0 means "as many as the first pass".
            ("Hires steps", (job.hires_steps or None) if job.has_hires_fix() else None),
            ("Hires upscaler", "Lanczos" if job.has_hires_fix() else None),
            ("Lora hashes", lora_hashes(job_loras)),
            ("TI hashes", ti_hashes(embeddings)),
            *controlnet_units(job),
            ("Version", f"studio {studio_version}"),
        ],
    )


def image_create_from_generation(*, job, pil_image, result):
    """Save one image of a GenerationResult as a PNG carrying its parameters, and its row."""
    parameters = job_infotext(
        job,
        seed=result.seed,
        sampler=result.sampler,
        schedule_type=result.schedule_type,
        variation_seed=result.variation_seed,
    )
    seed = result.seed
    spec = {
        "job_id": job.pk,
        "mode": job.mode,
        "source_image_id": job.source_image_id,
        "variation": {"seed": result.variation_seed, "strength": job.variation_strength}
        if job.variation_strength
        else None,
        "strength": float(denoising_strength(job)) if job.mode != "txt2img" else None,
        "outpaint": {side.removeprefix("outpaint_"): getattr(job, side) for side in OUTPAINT_SIDES}
        if job.mode == "outpaint"
        else None,
        "clip_skip": job.clip_skip,
        "batch_size": job.batch_size,
        "hires": {
            "scale": job.hires_scale,
            "steps": job.hires_steps or job.steps,
            "strength": job.hires_strength,
            "upscaler": "Lanczos",
        }
        if job.has_hires_fix()
        else None,
        "model": {
            "name": job.model.name,
            "source": job.model.source,
            "sha256": job.model.sha256 or None,
        },
        "controlnet": {
            "module": "canny",
            "model": {"name": job.control_model.name, "source": job.control_model.source},
            "image_id": job.control_image_id,
            "weight": job.control_scale,
            "low_threshold": job.control_low_threshold,
            "high_threshold": job.control_high_threshold,
        }
        if job.control_model_id
        else None,
        "ip_adapter": {
            "model": {"name": job.ip_adapter_model.name, "source": job.ip_adapter_model.source},
            "image_id": job.ip_adapter_image_id,
            "scale": job.ip_adapter_scale,
        }
        if job.ip_adapter_model_id
        else None,
        "embeddings": [
            {"name": used.name, "sha256": used.sha256} for used in job_embeddings(job)
        ],
        "loras": [
            {"name": used.name, "sha256": used.sha256, "weight": used.weight,
             "in_prompt": used.in_prompt}
            for used in job.job_loras.all()
        ],
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "steps": job.steps,
        "guidance_scale": job.guidance_scale,
        "width": job.width,
        "height": job.height,
        "seed": seed,
        "sampler": job.sampler or None,
        "scheduler": {"class": result.scheduler_class, "config": result.scheduler_config},
        "versions": library_versions(),
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
    # Inside the job's transaction: should a later image or the commit fail, this file goes.
    with files_delete_on_rollback(image.file.storage) as written:
        image.file.save("generated.png", ContentFile(buffer.getvalue()), save=False)
        written.append(image.file.name)
        image.save()
    image_thumbnails_schedule(image=image)
    image_scan_schedule(image=image)
    return image


def image_thumbnails_schedule(*, image):
    """Thumbnails are made on the CPU queue once the image's row is committed. Robust: an
    unreachable broker skips none of the image's other hooks (the sweeper sends it again)."""
    # A lambda, not functools.partial: Django names a robust callback by its __qualname__
    # when it fails, which a partial lacks.
    transaction.on_commit(lambda: enqueue_thumbnails(image.pk), robust=True)
