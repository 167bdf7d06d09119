"""Running a job on a worker. Imports torch (through gpu_workers): workers only."""

import base64
import dataclasses
import io
import logging
import os
import socket
import threading
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageFilter

from gallery.services import image_create_from_generation
from generation.embedding_services import job_embedding_refs
from generation.lora_services import job_lora_refs
from generation.lora_syntax import prompt_without_lora_tags
from generation.models import GenerationJob, JobMode, JobStatus
from generation.queue import service_order
from generation.services import publish_queue_positions
from gpu_workers.requests import (
    ControlRef,
    GenerationCanceled,
    GenerationFailed,
    GenerationRequest,
    IPAdapterRef,
)
from gpu_workers.runner import generate_all
from studio.quotas.charging import usage_charge
from studio.realtime.events import publish

logger = logging.getLogger(__name__)

OUTPAINT_SEAM = 8  # pixels of the source redrawn along each extended side
OUTPAINT_BACKGROUND_BLUR = 16


def lease_deadline():
    return timezone.now() + timedelta(seconds=settings.STUDIO_JOB_LEASE_S)


def job_claim_next(job_id):
    """Claim the job to run for the message of `job_id`; its id, or None when none is left.

    The message's own job first if its worker died (lapsed lease) so it is not overtaken
    again, otherwise the queued job whose turn it is (generation.queue).
    """
    if job_claim(job_id, lapsed_only=True):
        return job_id
    for candidate in service_order():
        if job_claim(candidate):
            return candidate
    return None


def job_claim(job_id, *, lapsed_only=False):
    """Take the job: queued, or running on a worker whose lease lapsed (it died).

    One conditional UPDATE, so two deliveries of one message never both run it.
    """
    claimable = Q(status=JobStatus.RUNNING, lease_expires_at__lt=timezone.now())
    if not lapsed_only:
        claimable |= Q(status=JobStatus.QUEUED)
    claimed = GenerationJob.objects.filter(
        claimable, pk=job_id, attempts__lt=settings.STUDIO_JOB_MAX_ATTEMPTS
    ).update(
        status=JobStatus.RUNNING,
        attempts=F("attempts") + 1,
        started_at=timezone.now(),
        progress_step=0,
        lease_expires_at=lease_deadline(),
        worker=worker_name(),
    )
    return claimed == 1


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_seconds_left(job_id):
    """For a job running on another worker: seconds until its lease lapses (at least 1)."""
    lease = (
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING)
        .values_list("lease_expires_at", flat=True)
        .first()
    )
    if lease is None:
        return None
    return max(1.0, (lease - timezone.now()).total_seconds() + 1)


def job_fail_if_worn_out(job_id):
    """A job whose workers kept dying is failed rather than retried forever."""
    worn_out = GenerationJob.objects.filter(
        pk=job_id,
        status=JobStatus.RUNNING,
        lease_expires_at__lt=timezone.now(),
        attempts__gte=settings.STUDIO_JOB_MAX_ATTEMPTS,
    ).select_related("project")
    for job in worn_out:
        job_mark_ended(
            job,
            JobStatus.FAILED,
            f"The worker stopped during each of {job.attempts} attempts; giving up. Retry "
            "with a smaller size or fewer steps, or ask an admin to check the GPU workers.",
        )
        publish(job.project.events_group(), job.event_payload(type="job.failed", error=job.error))


def job_execute(*, job_id):
    """Run the job whose turn it is for the message of `job_id`.

    Returns None, or seconds after which to look again: the message's own job is running
    on another worker whose lease is live. Should that worker die, this message takes the
    job over once the lease lapses, whatever the broker's visibility timeout.
    """
    claimed_id = job_claim_next(job_id)
    if claimed_id is None:
        job_fail_if_worn_out(job_id)
        lease_left = lease_seconds_left(job_id)
        logger.info(
            "No job to claim for the message of job %s%s", job_id,
            f"; it runs elsewhere, looking again in {lease_left:.0f} s" if lease_left else "",
        )
        return lease_left
    job = GenerationJob.objects.select_related(
        "project",
        "model",
        "created_by",
        "source_image",
        "control_model",
        "control_image",
        "ip_adapter_model",
        "ip_adapter_image",
    ).get(pk=claimed_id)
    group = job.project.events_group()
    publish(group, job.event_payload(type="job.started"))
    publish_queue_positions()

    previews = {}
    cancel = threading.Event()
    # This attempt's hold on the job. Should its lease lapse anyway (a stalled worker) and
    # another attempt take the job over, every write below finds nothing and this attempt
    # stops: a job is finished, its images saved and its end announced exactly once.
    held = GenerationJob.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts
    )

    def renew_lease(**fields):
        """Renew the lease (and write `fields`) in one update. True while this attempt holds
        the job; stops the run on a cancel request."""
        if not held.update(lease_expires_at=lease_deadline(), **fields):
            logger.warning("Job %s was taken over by another attempt; stopping", job.pk)
            cancel.set()
            return False
        if held.filter(cancel_requested_at__isnull=False).exists():
            cancel.set()
        return True

    def progress(steps_before):
        """Callbacks for one pass; steps count on from the passes before it."""

        def on_preview(step, image):
            previews[steps_before + step] = preview_data_url(image)

        def on_step(step, total):
            step += steps_before
            job.progress_step = step
            if not renew_lease(progress_step=step):
                return
            event = job.event_payload(type="job.progress", step=step)
            # The engine sends a step's preview just before the step, about 4 per second.
            if step in previews:
                event["preview"] = previews.pop(step)
            publish(group, event)

        return {
            "on_step": on_step,
            "on_preview": on_preview,
            "should_cancel": cancel.is_set,
            # Loading a model or waiting for a batch can outlast the lease: renew it.
            "on_wait": renew_lease,
            "wait_interval_s": settings.STUDIO_JOB_LEASE_S / 4,
        }

    passes = []  # each pass's results: the GPU time the team is charged

    def end(status, error=""):
        """Record how the job ended, if this attempt still holds it."""
        job.status, job.error, job.finished_at = status, error, timezone.now()
        ended = held.update(status=status, error=error, finished_at=job.finished_at)
        if ended:
            usage_charge(job=job, passes=passes)
        return ended

    try:
        requests = generation_requests(job)
        results = generate_all(requests, **progress(0))
        passes.append(results)
        if job.has_hires_fix():
            requests = hires_requests(job, requests, results)
            results = generate_all(requests, **progress(job.first_pass_steps()))
            passes.append(results)
        with transaction.atomic():
            if not end(JobStatus.FINISHED):
                logger.warning("Job %s was taken over by another attempt; result dropped", job.pk)
                return None
            images = [
                image_create_from_generation(job=job, pil_image=pil_image, result=result)
                for result in results
                for pil_image in result.images
            ]
    except GenerationCanceled as canceled:
        if end(JobStatus.CANCELED, str(canceled)):
            publish(group, job.event_payload(type="job.canceled"))
        return None
    except Exception as error:
        logger.exception("Job %s failed", job.pk)
        if end(JobStatus.FAILED, failure_reason(error)):
            publish(group, job.event_payload(type="job.failed", error=job.error))
        return None
    publish(
        group,
        job.event_payload(
            type="job.finished",
            images=[image.event_payload() for image in images],
        ),
    )
    return None


def generation_requests(job):
    """The job as plain requests for gpu_workers: one per image of its batch."""
    init_image, mask_image = source_and_mask(job)
    request = GenerationRequest(
        model_source=job.model.source,
        model_config=job.model.config_source or None,
        # <lora:…> tags are applied as adapters, not read by the text encoder.
        prompt=prompt_without_lora_tags(job.prompt),
        negative_prompt=job.negative_prompt,
        steps=job.steps,
        guidance_scale=job.guidance_scale,
        width=job.width,
        height=job.height,
        seed=job.seed,
        sampler=job.sampler or job.model.default_sampler or None,
        clip_skip=job.clip_skip,
        init_image=init_image,
        mask_image=mask_image,
        # What outpainting adds has nothing to keep: it is drawn from noise.
        strength=1.0 if job.mode == JobMode.OUTPAINT else job.strength,
        loras=job_lora_refs(job),
        control=control_ref(job),
        ip_adapter=ip_adapter_ref(job),
        embeddings=job_embedding_refs(job),
    )
    # A1111's batch: one image per seed, counting up from the job's; with variations the
    # seed stays and the variation seeds count up instead.
    if job.variation_strength:
        return [
            dataclasses.replace(
                request,
                variation_seed=(job.variation_seed + n) % 2**32,
                variation_strength=job.variation_strength,
            )
            for n in range(job.batch_size)
        ]
    return [
        dataclasses.replace(request, seed=(job.seed + n) % 2**32) for n in range(job.batch_size)
    ]


def hires_requests(job, first_requests, first_results):
    """Hires fix's second pass: each first image upscaled (Lanczos) and redrawn by img2img at
    the larger size, with the same seed."""
    width, height = job.hires_size()
    return [
        dataclasses.replace(
            request,
            width=width,
            height=height,
            steps=job.hires_steps or job.steps,
            init_image=result.images[0].resize((width, height), PILImage.Resampling.LANCZOS),
            strength=job.hires_strength,
            # The ControlNet steers the hires pass too, its image at the larger size.
            control=request.control
            and dataclasses.replace(
                request.control,
                image=request.control.image.resize((width, height), PILImage.Resampling.LANCZOS),
            ),
        )
        for request, result in zip(first_requests, first_results, strict=True)
    ]


def control_ref(job):
    """The job's ControlNet for gpu_workers, or None: the control image at the job's size
    (the worker takes its canny edges with the job's thresholds)."""
    if job.control_model is None:
        return None
    image = stored_image(job.control_upload or (job.control_image and job.control_image.file))
    if image is None:
        raise GenerationFailed("Its ControlNet image was deleted before the job ran.")
    return ControlRef(
        model_source=job.control_model.source,
        image=image.resize((job.width, job.height), PILImage.Resampling.LANCZOS),
        conditioning_scale=job.control_scale,
        low_threshold=job.control_low_threshold,
        high_threshold=job.control_high_threshold,
        name=job.control_model.name,
    )


def ip_adapter_ref(job):
    """The job's IP-Adapter image prompt for gpu_workers, or None. The image goes as it is:
    the adapter's image encoder resizes it."""
    if job.ip_adapter_model is None:
        return None
    image = stored_image(
        job.ip_adapter_upload or (job.ip_adapter_image and job.ip_adapter_image.file)
    )
    if image is None:
        raise GenerationFailed("Its IP-Adapter image prompt was deleted before the job ran.")
    return IPAdapterRef(
        model_source=job.ip_adapter_model.source,
        image=image,
        scale=job.ip_adapter_scale,
        name=job.ip_adapter_model.name,
    )


def source_and_mask(job):
    """The job's source image and mask at its size, as gpu_workers takes them: (None, None)
    for txt2img; the source resized as A1111's "Just resize" does; for outpainting, the
    source on the larger canvas and a mask over what is added."""
    if job.mode == JobMode.TXT2IMG:
        return None, None
    source = stored_image(job.source_upload or (job.source_image and job.source_image.file))
    if source is None:
        raise GenerationFailed("Its source image was deleted before the job ran.")
    size = (job.width, job.height)
    if job.mode == JobMode.IMG2IMG:
        return source.resize(size, PILImage.Resampling.LANCZOS), None
    if job.mode == JobMode.INPAINT:
        mask = stored_image(job.mask_upload)
        if mask is None:
            raise GenerationFailed("Its mask was deleted before the job ran.")
        # Nearest: the mask stays black and white.
        mask = mask.convert("L").resize(size, PILImage.Resampling.NEAREST)
        return source.resize(size, PILImage.Resampling.LANCZOS), mask
    return outpaint_canvas(job, source)


def stored_image(file):
    """An RGB image from storage, or None when there is no file."""
    if not file:
        return None
    with file.open("rb") as opened:
        return PILImage.open(opened).convert("RGB")


def outpaint_canvas(job, source):
    """The source on the job's larger canvas, the added area filled with a blurred stretch
    of the source (colours for the model to continue), and the mask: the added area plus
    a seam of OUTPAINT_SEAM pixels into the source on each extended side, redrawn so the
    two blend."""
    left, top, right, bottom = job.source_box()
    source = source.resize((right - left, bottom - top), PILImage.Resampling.LANCZOS)
    canvas = source.resize((job.width, job.height), PILImage.Resampling.BILINEAR)
    canvas = canvas.filter(ImageFilter.GaussianBlur(OUTPAINT_BACKGROUND_BLUR))
    canvas.paste(source, (left, top))
    mask = PILImage.new("L", (job.width, job.height), 255)
    kept = (
        left + (OUTPAINT_SEAM if job.outpaint_left else 0),
        top + (OUTPAINT_SEAM if job.outpaint_top else 0),
        right - (OUTPAINT_SEAM if job.outpaint_right else 0),
        bottom - (OUTPAINT_SEAM if job.outpaint_bottom else 0),
    )
    mask.paste(0, kept)
    return canvas, mask


def preview_data_url(image):
    """A small JPEG data URL: at latent resolution it is a few kilobytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def job_mark_ended(job, status, error):
    job.status = status
    job.error = error
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error", "finished_at"])


def failure_reason(error):
    """A message a user can act on, naming no server path; the traceback stays in the
    worker's log."""
    from generation.failures import error_summary, storage_is_full

    if storage_is_full(error):
        return (
            "The server's storage is full, so this job's images could not be saved and none "
            "was kept. Retry once an admin has freed space."
        )
    text = error_summary(error)
    reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return f"The worker could not generate this image ({reason[:400]})."
