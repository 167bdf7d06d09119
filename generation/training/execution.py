"""Running a training run on a worker. Imports torch (through gpu_workers): workers only."""

import base64
import io
import logging
import shutil
import threading
from contextlib import suppress
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import connection
from django.utils import timezone
from PIL import Image as PILImage

from generation.leases import TRANSIENT_ERRORS, claim, worker_name
from generation.loras.services import check_lora_upload, lora_create, lora_delete, unused_name
from generation.models import JobStatus
from generation.signals import training_run_ended
from generation.training.models import TrainingRun, TrainingSample, thin_losses
from gpu_workers.requests import GenerationFailed
from gpu_workers.training_plan import (
    TrainingCanceled,
    TrainingFailed,
    TrainingImage,
    TrainingRequest,
)
from studio.ops.logging import log_context
from studio.realtime.event_types import EventType
from studio.realtime.events import publish

logger = logging.getLogger(__name__)

SAMPLE_EVENT_SIDE = 256  # samples travel in events as JPEGs at most this large
# kohya's names for the base model, which the library reads back as the LoRA's family;
# FLUX.1's is sd-scripts' library/flux_utils.py MODEL_VERSION_FLUX_V1. SD 3.x's depends on
# the variant ("medium", "5-medium", "5-large": library/sd3_utils.py reads it from the
# weights), so the worker writes it from the transformer it trained
# (gpu_workers.flow_training.kohya_sd3_version).
BASE_MODEL_VERSIONS = {"sd15": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0", "flux1": "flux1"}


def training_claim(run_id):
    """Claim the run of the message `run_id`, or else the oldest queued run (a message only
    says a run is waiting: the sweeper sends one for a run whose message was lost).
    (run id, Hold), or (None, None) when none is queued."""
    candidates = TrainingRun.objects.filter(status=JobStatus.QUEUED).order_by("created_at", "id")
    for candidate in [run_id, *candidates.values_list("pk", flat=True)[:20]]:
        hold = claim(TrainingRun, candidate, losses=[])
        if hold is not None:
            return candidate, hold
    return None, None


def training_execute(*, run_id):
    """Run a queued training run, woken by the message of `run_id`; idempotent.

    A database that becomes unreachable midway raises (the task retries later); the run is
    never failed for it: its lease lapses and the sweeper queues it again.
    """
    claimed_id, hold = training_claim(run_id)
    if claimed_id is None:
        logger.info("No queued training run left for the message of run %s", run_id)
        return
    with log_context(run_id=claimed_id):
        training_run(claimed_id, hold)
        training_run_ended.send(sender=TrainingRun, run_id=claimed_id)


def training_run(run_id, hold):
    from gpu_workers.training import train_dreambooth_lora

    run = TrainingRun.objects.select_related(
        "subject", "subject__team", "project", "model", "created_by"
    ).get(pk=run_id)
    for sample in run.samples.all():  # an earlier attempt's, made again by this one
        sample.file.delete(save=False)
        sample.delete()
    group = run.project.events_group()
    log_lines = [run.log] if run.log else []
    losses = []
    canceled = [False]

    def keep(renewed):
        """Notes a cancel request or a lost hold (another attempt took the run over)."""
        if not renewed or hold.cancel_requested():
            canceled[0] = True

    def on_log(line):
        stamped = f"[{timezone.now():%H:%M:%S}] {line}"
        log_lines.append(stamped)
        keep(hold.renew(log="\n".join(log_lines)))
        publish(group, run.event_payload(type=EventType.TRAINING_LOG, line=stamped))

    def on_step(step, total, loss):
        nonlocal losses
        losses = thin_losses([*losses, [step, round(loss, 5)]])
        run.progress_step = step
        keep(hold.worked_on(progress_step=step, losses=losses))
        publish(group, run.event_payload(type=EventType.TRAINING_PROGRESS, loss=loss))

    def on_sample(step, image):
        sample = TrainingSample(run=run, step=step)
        sample.file.save("sample.png", ContentFile(png_bytes(image)), save=False)
        sample.save()
        publish(
            group,
            run.event_payload(
                type=EventType.TRAINING_SAMPLE,
                sample_step=step,
                url=sample.get_absolute_url(),
                preview=jpeg_data_url(image),
            ),
        )

    def renew_until(stop):
        """Loading a model (or sampling, evaluating) can outlast the lease with no step or
        log line to renew it: renew meanwhile, as generation's on_wait does."""
        try:
            while not stop.wait(settings.STUDIO_JOB_LEASE_S / 4):
                with suppress(*TRANSIENT_ERRORS):
                    keep(hold.renew())
        finally:
            connection.close()  # this thread's own

    on_log(f"Attempt {run.attempts + 1} on {worker_name()}.")
    publish(group, run.event_payload(type=EventType.TRAINING_STARTED))
    try:
        stop_renewing = threading.Event()
        renewer = threading.Thread(target=renew_until, args=(stop_renewing,), daemon=True)
        # Inside a caller's transaction (a test's) its updates would wait on our row lock.
        if not connection.in_atomic_block:
            renewer.start()
        try:
            result = train_dreambooth_lora(
                training_request(run),
                on_step=on_step,
                on_sample=on_sample,
                on_log=on_log,
                should_cancel=lambda: canceled[0],
            )
        finally:
            stop_renewing.set()
            if renewer.is_alive():
                renewer.join()
        try:
            lora = lora_from_run(run, result.lora_path)
        finally:
            shutil.rmtree(Path(result.lora_path).parent, ignore_errors=True)
        on_log(f"Added “{lora.name}” to {run.subject.team.name}'s LoRA library.")
        finished = hold.end(
            JobStatus.FINISHED,
            lora=lora,
            evaluation_loss_before=result.evaluation_loss_before,
            evaluation_loss_after=result.evaluation_loss_after,
        )
        if not finished:
            # Another attempt holds the run now: the library keeps only the LoRA it makes.
            # (Not one transaction with the end: SQLite's would hold its lock while the
            # large file is written.)
            lora_delete(lora=lora, user=run.created_by)
            logger.warning("Training run %s was taken over by another attempt", run.pk)
            return
        run.refresh_from_db()
        publish(
            group,
            run.event_payload(
                type=EventType.TRAINING_FINISHED, lora_id=lora.pk, lora_url=lora.get_absolute_url()
            ),
        )
    except TrainingCanceled as stop:
        on_log(str(stop))
        if hold.end(JobStatus.CANCELED, error=str(stop)):
            run.status = JobStatus.CANCELED
            publish(group, run.event_payload(type=EventType.TRAINING_CANCELED))
    except TRANSIENT_ERRORS:
        raise
    except Exception as error:
        logger.exception("Training run %s failed", run.pk)
        reason = failure_reason(error)
        on_log(f"Failed: {reason}")
        if hold.end(JobStatus.FAILED, error=reason):
            run.status = JobStatus.FAILED
            publish(group, run.event_payload(type=EventType.TRAINING_FAILED, error=reason))


def training_request(run):
    """The run as gpu_workers takes it: each image cropped to its square at the training
    resolution, with its caption."""
    subject = run.subject
    refusal = subject.training_refusal()
    if refusal:  # images deleted or consent revoked since the run was queued
        raise TrainingFailed(refusal)
    images = []
    for image in subject.images.all():
        with image.file.open("rb") as opened:
            picture = PILImage.open(opened).convert("RGB")
        square = picture.crop(image.crop_box()).resize(
            (run.resolution, run.resolution), PILImage.Resampling.LANCZOS
        )
        images.append(TrainingImage(image=square, caption=image.training_caption()))
    return TrainingRequest(
        model_source=run.model.source,
        model_config=run.model.config_source or None,
        images=tuple(images),
        instance_prompt=subject.instance_prompt(),
        class_prompt=subject.class_prompt(),
        resolution=run.resolution,
        steps=run.steps,
        learning_rate=run.learning_rate,
        rank=run.rank,
        batch_size=run.batch_size,
        seed=run.seed,
        train_text_encoder=run.train_text_encoder,
        prior_preservation=run.prior_preservation,
        fp8_base=run.fp8_base,
        class_images=run.class_images,
        sample_prompt=run.sample_prompt,
        sample_every=run.sample_every,
        metadata={
            "ss_sd_model_name": run.model.name,
            **base_model_version(run.model.family),
            "modelspec.trigger_phrase": f"{subject.token} {subject.class_word}",
            "ss_output_name": subject.name,
        },
    )


def base_model_version(family):
    """The header's ss_base_model_version for `family`, where the family alone names it."""
    version = BASE_MODEL_VERSIONS.get(family)
    return {"ss_base_model_version": version} if version else {}


def lora_from_run(run, path):
    """The trained file into the team's library, through the same checks as an upload."""
    subject, team = run.subject, run.subject.team
    if subject.depicts_person and subject.active_consent() is None:
        raise TrainingFailed("The subject's consent was revoked during training; no LoRA was kept.")
    with open(path, "rb") as opened:
        upload = UploadedFile(
            opened, name=f"{subject.token}.safetensors",
            content_type="application/octet-stream", size=Path(path).stat().st_size,
        )
        checked = check_lora_upload(team=team, upload=upload)
        return lora_create(
            team=team,
            user=run.created_by,
            checked=checked,
            name=unused_name(team, subject.lora_name()),
            description=(
                f"DreamBooth-LoRA of {subject.name} ({subject.instance_prompt()}), trained in "
                f"{run.project.name}: {run.steps} steps, rank {run.rank}, "
                f"{run.resolution}px."
            ),
            family=run.model.family,
            trigger_words=f"{subject.token} {subject.class_word}",
        )


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_data_url(image):
    small = image.copy()
    small.thumbnail((SAMPLE_EVENT_SIDE, SAMPLE_EVENT_SIDE))
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def failure_reason(error):
    """A message a user can act on, naming no server path; the traceback stays in the
    worker's log."""
    from generation.failures import error_summary, paths_hidden
    from studio.storage import storage_is_full

    if storage_is_full(error):
        return (
            "The server's storage is full, so the trained LoRA could not be saved and nothing "
            "was kept. Retry once an admin has freed space."
        )
    if isinstance(error, ValidationError):  # the library refused the trained file
        return paths_hidden(" ".join(error.messages))[:500]
    text = error_summary(error) or type(error).__name__
    if isinstance(error, (TrainingFailed, GenerationFailed)):
        return text[:500]
    return f"The worker could not train this LoRA ({type(error).__name__}: {text[:400]})."
