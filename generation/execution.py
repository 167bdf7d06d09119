"""Running a job on a worker. Imports torch (through gpu_workers): workers only."""

import base64
import dataclasses
import io
import logging
import threading

from django.conf import settings
from django.db import transaction
from PIL import Image as PILImage
from PIL import ImageFilter

from gallery.services import generated_pngs, image_create_from_png
from generation.leases import TRANSIENT_ERRORS, Standing, claim
from generation.loras.embeddings.services import job_embedding_refs
from generation.loras.services import job_lora_refs
from generation.loras.syntax import prompt_without_lora_tags
from generation.models import GenerationJob, JobMode, JobStatus
from generation.progress import writer as progress_writer
from generation.queue import service_order
from generation.seeds import seed_after
from generation.services import publish_queue_positions
from generation.signals import job_ended
from gpu_workers.control import NONE as IMAGE_AS_IS
from gpu_workers.requests import (
    ControlRef,
    GenerationCanceled,
    GenerationFailed,
    GenerationRequest,
    IPAdapterRef,
)
from gpu_workers.runner import generate_all
from studio.ops.logging import log_context
from studio.realtime.event_types import EventType
from studio.realtime.events import publish

logger = logging.getLogger(__name__)

OUTPAINT_SEAM = 8  # pixels of the source redrawn along each extended side
OUTPAINT_BACKGROUND_BLUR = 16


def job_claim_next():
    """Claim the queued job whose turn it is (generation.queue); its Hold, or None when no
    job is left. A message names no job of its own: it only says one is waiting."""
    for candidate in service_order():
        hold = claim(GenerationJob, candidate)
        if hold is not None:
            return candidate, hold
    return None, None


def job_execute(*, job_id):
    """Run the job whose turn it is, woken by the message of `job_id`.

    A database that becomes unreachable midway raises (the task retries later); the job
    is never marked failed for it: its lease lapses and the sweeper queues it again.
    """
    claimed_id, hold = job_claim_next()
    if claimed_id is None:
        logger.info("No queued job left for the message of job %s", job_id)
        return
    with log_context(job_id=claimed_id):
        job_run(claimed_id, hold)


def job_run(job_id, hold):
    job = GenerationJob.objects.select_related(
        "project",
        "model",
        "created_by",
        "source_image",
        "control_model",
        "control_image",
        "ip_adapter_model",
        "ip_adapter_image",
    ).get(pk=job_id)
    group = job.project.events_group()
    publish(group, job.event_payload(type=EventType.JOB_STARTED))
    publish_queue_positions()

    progress = JobProgress(job, hold, group)

    def on_load(kind, source, loaded, total):
        # A cold model takes seconds to minutes to load: say which one, and how far along.
        models = {
            "model": job.model,
            "controlnet": job.control_model,
            "ip_adapter": job.ip_adapter_model,
        }
        name = models[kind].name if kind else ""  # no kind: every model is loaded
        publish(
            group,
            job.event_payload(
                type=EventType.JOB_PREPARING, stage="loading", loading=name, loaded=loaded, of=total
            ),
        )

    def callbacks(steps_before):
        """Callbacks for one pass; steps count on from the passes before it."""
        return {
            "on_step": lambda step, total: progress.on_step(steps_before + step),
            "on_preview": lambda step, image: progress.on_preview(steps_before + step, image),
            "on_load": on_load,
            "should_cancel": progress.cancel.is_set,
            # Loading a model or waiting for a batch can outlast the lease: renew it.
            "on_wait": lambda: progress.keep(hold.renewed()),
            "wait_interval_s": settings.STUDIO_JOB_LEASE_S / 4,
        }

    passes = []  # each pass's results: the GPU time the team is charged

    def end(status, error=""):
        """Record how the job ended, if this attempt still holds it."""
        job.status, job.error = status, error
        ended = hold.end(status, error=error)
        if ended:
            job_ended.send(sender=GenerationJob, job=job, passes=passes)
        return ended

    try:
        try:
            requests = generation_requests(job)
            results = generate_all(requests, **callbacks(0))
            passes.append(results)
            if job.has_hires_fix():
                requests = hires_requests(job, requests, results)
                results = generate_all(requests, **callbacks(job.first_pass_steps()))
                passes.append(results)
        finally:
            # Before its end is written and announced (and before the transaction that
            # holds its row, which another thread's write of progress would wait on).
            progress.end()
        pngs = generated_pngs(
            job=job, images=[(image, result) for result in results for image in result.images]
        )
        with transaction.atomic():
            if not end(JobStatus.FINISHED):
                logger.warning("Job %s was taken over by another attempt; result dropped", job.pk)
                return
            images = [image_create_from_png(job=job, png=png) for png in pngs]
    except GenerationCanceled as canceled:
        if end(JobStatus.CANCELED, str(canceled)):
            publish(group, job.event_payload(type=EventType.JOB_CANCELED))
        return
    except TRANSIENT_ERRORS:
        raise
    except Exception as error:
        logger.exception("Job %s failed", job.pk)
        if end(JobStatus.FAILED, failure_reason(error)):
            publish(group, job.event_payload(type=EventType.JOB_FAILED, error=job.error))
        return
    publish(
        group,
        job.event_payload(
            type=EventType.JOB_FINISHED,
            images=[image.event_payload() for image in images],
        ),
    )


class JobProgress:
    """One attempt's progress on a running job: its steps and previews come in on the job's
    thread; its progress is written with that of every other job of this process
    (generation.progress) and published by whichever thread writes it. `cancel` is set
    once another attempt holds the job or its owner asked to cancel it."""

    def __init__(self, job, hold, group):
        self.job, self.hold, self.group = job, hold, group
        self.cancel = threading.Event()
        self._preview_lock = threading.Lock()
        self._preview = None  # (step, data URL): the newest preview not yet sent

    def keep(self, standing):
        """Stop the run once another attempt holds the job or its owner asked to cancel.
        Should the lease lapse anyway (a stalled worker) and the job be taken over, every
        write finds nothing: a job is finished, its images saved and its end announced
        exactly once. False once the job is lost."""
        if standing is Standing.LOST:
            logger.warning("Job %s was taken over by another attempt; stopping", self.job.pk)
            self.cancel.set()
            return False
        if standing is Standing.CANCEL_REQUESTED:
            self.cancel.set()
        return True

    def on_preview(self, step, image):
        data_url = preview_data_url(image)
        with self._preview_lock:
            self._preview = (step, data_url)

    def on_step(self, step):
        self.job.progress_step = step
        first_or_last = step == 1 or step == self.job.total_steps()
        progress_writer.report(self.hold, step, self.written, due=first_or_last)

    def written(self, step, standing):
        """The step is written (generation.progress): its event to publish, as its row
        stands (none once the job is lost)."""
        if not self.keep(standing):
            return None
        event = self.job.event_payload(type=EventType.JOB_PROGRESS, step=step)
        # The engine sends a step's preview just before the step, about 4 per second: the
        # newest one up to this step goes with it.
        with self._preview_lock:
            if self._preview is not None and self._preview[0] <= step:
                event["preview"] = self._preview[1]
                self._preview = None
        return self.group, event

    def end(self):
        """No more of its progress is written or published: the job's end follows."""
        progress_writer.end(self.hold)


def generation_requests(job):
    """The job's recipe as plain requests for gpu_workers: one per image of its batch. The
    library's models and the stored images come from the job's rows."""
    recipe = job.recipe()
    init_image, mask_image = source_and_mask(job)
    width, height = recipe.canvas_size()
    request = GenerationRequest(
        model_source=job.model.source,
        model_config=job.model.config_source or None,
        # <lora:…> tags are applied as adapters, not read by the text encoder.
        prompt=prompt_without_lora_tags(recipe.prompt),
        negative_prompt=recipe.negative_prompt,
        steps=recipe.steps,
        guidance_scale=recipe.guidance_scale,
        width=width,
        height=height,
        seed=recipe.seed,
        sampler=recipe.sampler or job.model.default_sampler or None,
        shift=recipe.shift,
        clip_skip=recipe.clip_skip,
        init_image=init_image,
        mask_image=mask_image,
        # What outpainting adds has nothing to keep: it is drawn from noise.
        strength=1.0 if recipe.mode == JobMode.OUTPAINT else recipe.strength,
        loras=job_lora_refs(job),
        control=control_ref(job),
        ip_adapter=ip_adapter_ref(job),
        embeddings=job_embedding_refs(job),
    )
    # A1111's batch: one image per seed, counting up from the job's; with variations the
    # seed stays and the variation seeds count up instead.
    if recipe.variation:
        return [
            dataclasses.replace(
                request,
                variation_seed=seed_after(recipe.variation.seed, n),
                variation_strength=recipe.variation.strength,
            )
            for n in range(recipe.batch_size)
        ]
    return [
        dataclasses.replace(request, seed=seed_after(recipe.seed, n))
        for n in range(recipe.batch_size)
    ]


def hires_requests(job, first_requests, first_results):
    """Hires fix's second pass: each first image upscaled (Lanczos) and redrawn by img2img at
    the larger size, with the same seed."""
    recipe = job.recipe()
    width, height = job.hires_size()
    return [
        dataclasses.replace(
            request,
            width=width,
            height=height,
            steps=recipe.hires.steps or recipe.steps,
            # Prompt editing goes on over both passes, as A1111 1.6+ schedules it.
            first_pass_steps=recipe.steps,
            init_image=result.images[0].resize((width, height), PILImage.Resampling.LANCZOS),
            strength=recipe.hires.strength,
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
    (the worker takes its canny edges with the job's thresholds). A FLUX.1 Depth or Canny
    [dev] model reads the image itself, as it is (a depth map, edges): no ControlNet."""
    reads_image = job.model.is_flux_control
    if job.control_model is None and not reads_image:
        return None
    image = stored_image(job.control_upload or (job.control_image and job.control_image.file))
    if image is None:
        what = "control image" if reads_image else "ControlNet image"
        raise GenerationFailed(f"Its {what} was deleted before the job ran.")
    image = image.resize((job.width, job.height), PILImage.Resampling.LANCZOS)
    if reads_image:
        return ControlRef(model_source="", image=image, module=IMAGE_AS_IS)
    return ControlRef(
        model_source=job.control_model.source,
        image=image,
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


def failure_reason(error):
    """A message a user can act on, naming no server path; the traceback stays in the
    worker's log."""
    from generation.failures import error_summary
    from studio.storage import storage_is_full

    if storage_is_full(error):
        return (
            "The server's storage is full, so this job's images could not be saved and none "
            "was kept. Retry once an admin has freed space."
        )
    text = error_summary(error)
    reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return f"The worker could not generate this image ({reason[:400]})."
