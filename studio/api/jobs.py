"""Generation jobs: create (the studio's generate form, as JSON), list, get, cancel, retry.

Job creation validates the body through the same GenerationForm the studio posts and
queues through generation.services.jobs_create, so the prompt policy, model and LoRA
permissions, quotas and budgets refuse an API request exactly as they refuse the browser.
"""

import base64
import binascii
import hashlib
from datetime import datetime, timedelta

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from generation import admission, services
from generation.forms import MASK_DATA_PREFIX, GenerationForm
from generation.models import DiffusionModel, GenerationJob, JobMode, JobStatus
from generation.views import initial_parameters
from studio.api.access import allowed, job_for, project_for, visible_projects
from studio.api.models import IdempotencyKey
from studio.api.problems import Problem, throttle
from studio.throttling import generate_rate_limited

router = Router(tags=["jobs"])

MAX_PAGE = 100
# A retried request finds its key this long; older keys are forgotten.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
# Body fields holding base64 images, and the form fields they fill.
UPLOAD_FIELDS = ("source_upload", "control_upload", "ip_adapter_upload")
# API names that differ from the form's.
FORM_NAMES = {"mask": "mask_data", "loras": "lora"}
API_NAMES = {form: api for api, form in FORM_NAMES.items()}


class LoraIn(Schema):
    id: int = Field(..., description="A LoRA of the project's team (GET /teams/{id}/loras).")
    weight: float | None = Field(None, description="Empty: the LoRA's default weight.")


class JobCreateIn(Schema):
    """The recipe: the studio's generate form as JSON. Images come as gallery ids
    (`source_image`, `control_image`, `ip_adapter_image`) or as base64 PNG, JPEG or WebP
    (`source_upload`, `control_upload`, `ip_adapter_upload`; `mask` is a base64 PNG, white
    where the source is redrawn). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str = ""
    model: int = Field(..., description="A model id from GET /projects/{id}/models.")
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    sampler: str | None = Field(None, description="An A1111 sampler name; empty: the model's.")
    shift: float | None = Field(
        None, description="FLUX.1 and SD 3.x only: the flow-matching shift; empty: the model's."
    )
    clip_skip: int | None = None
    batch_size: int | None = None
    batch_count: int | None = None
    seed: int | None = Field(None, description="Empty or -1: random.")
    variation_seed: int | None = None
    variation_strength: float | None = None
    loras: list[LoraIn] = []
    source_image: int | None = None
    source_upload: str | None = None
    strength: float | None = None
    mask: str | None = None
    outpaint_left: int | None = None
    outpaint_right: int | None = None
    outpaint_top: int | None = None
    outpaint_bottom: int | None = None
    hires_fix: bool = False
    hires_scale: float | None = None
    hires_steps: int | None = None
    hires_strength: float | None = None
    control_model: int | None = None
    control_image: int | None = None
    control_upload: str | None = None
    control_low_threshold: int | None = None
    control_high_threshold: int | None = None
    control_scale: float | None = None
    ip_adapter_model: int | None = None
    ip_adapter_image: int | None = None
    ip_adapter_upload: str | None = None
    ip_adapter_scale: float | None = None
    remix_of: int | None = None


class JobLoraOut(Schema):
    lora_id: int | None
    name: str
    weight: float
    in_prompt: bool


class JobOut(Schema):
    id: int
    project_id: int
    created_by: str
    status: JobStatus
    mode: JobMode
    model_id: int
    model: str
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    seed: int
    sampler: str
    shift: float | None
    clip_skip: int
    batch_size: int
    strength: float
    loras: list[JobLoraOut]
    step: int
    total_steps: int
    progress_percent: int
    queue_position: int | None
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    image_ids: list[int]


class JobsCreatedOut(Schema):
    jobs: list[JobOut]


class JobPageOut(Schema):
    items: list[JobOut]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next page; null on the last one."
    )


class JobFilters(Schema):
    project: int | None = Field(None, description="Only this project's jobs.")
    status: list[JobStatus] = Field([], description="Any of these statuses.")
    mode: JobMode | None = None
    mine: bool = Field(False, description="Only jobs the caller created.")
    created_after: datetime | None = None
    created_before: datetime | None = None
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


def job_out(job, *, positions=None, loras=None, image_ids=None):
    """`loras` and `image_ids`, when given, are the job's as the caller has them (else read)."""
    position = None
    if job.status == JobStatus.QUEUED:
        position = positions.get(job.pk) if positions is not None else job.queue_position()
    if loras is None:
        loras = [
            {"lora_id": used.lora_id, "name": used.name, "weight": used.weight,
             "in_prompt": used.in_prompt}
            for used in job.job_loras.all()
        ]
    if image_ids is None:
        image_ids = [image.pk for image in job.images.all()]
    return {
        "id": job.pk,
        "project_id": job.project_id,
        "created_by": job.created_by.get_username(),
        "status": job.status,
        "mode": job.mode,
        "model_id": job.model_id,
        "model": job.model.name,
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "steps": job.steps,
        "guidance_scale": job.guidance_scale,
        "width": job.width,
        "height": job.height,
        "seed": job.seed,
        "sampler": job.sampler,
        "shift": job.shift,
        "clip_skip": job.clip_skip,
        "batch_size": job.batch_size,
        "strength": job.strength,
        "loras": loras,
        "step": job.progress_step,
        "total_steps": job.total_steps(),
        "progress_percent": job.progress_percent(),
        "queue_position": position,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "image_ids": image_ids,
    }


def jobs_out(jobs):
    jobs = list(jobs)
    positions = (
        GenerationJob.objects.positions()
        if any(job.status == JobStatus.QUEUED for job in jobs) else {}
    )
    return [job_out(job, positions=positions) for job in jobs]


def created_jobs_out(jobs, loras):
    """The answer for jobs just queued, from the rows saved (not read back): the LoRA stack
    they were saved with, no images yet, and the places in line they were announced with
    (generation.services.jobs_dispatch), read here only if they were not announced yet."""
    stack = [
        {"lora_id": choice.lora.pk, "name": choice.lora.name, "weight": choice.weight,
         "in_prompt": choice.in_prompt}
        for choice in loras
    ]
    if all(hasattr(job, "announced_position") for job in jobs):
        positions = {job.pk: job.announced_position for job in jobs}
    else:
        positions = GenerationJob.objects.positions()
    return [job_out(job, positions=positions, loras=stack, image_ids=[]) for job in jobs]


def with_details(jobs):
    return jobs.select_related("created_by", "model").prefetch_related("job_loras", "images")


@router.get("/jobs", response=JobPageOut, summary="Jobs the caller may see, newest first")
def jobs_list(request, filters: Query[JobFilters]):
    jobs = GenerationJob.objects.filter(project__in=visible_projects(request).values("pk"))
    if filters.project is not None:
        jobs = jobs.filter(project_id=filters.project)
    if filters.status:
        jobs = jobs.filter(status__in=filters.status)
    if filters.mode:
        jobs = jobs.filter(mode=filters.mode)
    if filters.mine:
        jobs = jobs.filter(created_by=request.user)
    if filters.created_after:
        jobs = jobs.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        jobs = jobs.filter(created_at__lt=filters.created_before)
    if filters.cursor is not None:
        if not filters.cursor.isdecimal() or len(filters.cursor) > 18:
            raise Problem(
                422, "cursor: use the `next_cursor` of the previous page.",
                errors=[{"field": "cursor", "message": "Not a cursor this API gave."}],
            )
        jobs = jobs.filter(pk__lt=int(filters.cursor))
    page = list(with_details(jobs.order_by("-pk"))[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {"items": jobs_out(page), "next_cursor": str(page[-1].pk) if more else None}


@router.get("/jobs/{job_id}", response=JobOut)
def job_get(request, job_id: int):
    job = job_for(request, job_id, "view")
    return jobs_out(with_details(GenerationJob.objects.filter(pk=job.pk)))[0]


@router.post(
    "/jobs/{job_id}/cancel", response=JobOut,
    summary="Cancel a queued job, or stop a running one at its next step",
    description="The job's author or a project admin. 409 once the job has ended.",
)
def job_cancel(request, job_id: int):
    job = job_for(request, job_id, "view")
    if not (job.created_by_id == request.user.pk or allowed(request, "manage", job.project)):
        raise Problem(403, "Only the job's author or a project admin may cancel it.")
    if not services.job_cancel(job=job, user=request.user):
        raise Problem(409, "This job has already ended; nothing to cancel.")
    return job_get(request, job_id)


@router.post(
    "/jobs/{job_id}/retry", response={201: JobOut},
    summary="Queue a failed or canceled job again, with the same parameters and seed",
)
def job_retry(request, job_id: int):
    job = job_for(request, job_id, "generate")
    throttle(request, generate_rate_limited)
    if not job.may_retry(request.user):
        raise Problem(409, "Only failed or canceled jobs can be retried.")
    # Refusals (model, LoRA, prompt policy, quota) are PermissionDenied: 403 or 429.
    new_job = services.job_retry(job=job, user=request.user)
    return Status(201, job_get(request, new_job.pk))


def decode_image(field, value):
    """A base64 image (a data: URL's prefix allowed) as an upload the form can check."""
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(
            422, f"{field}: not base64 data.",
            errors=[{"field": field, "message": "Send the image as base64 data."}],
        ) from None
    return content


def form_input(payload, project):
    """The form data and files the studio's generate form would receive for `payload`.
    Sizes, steps, CFG scale and sampler left out are the model's defaults, as the studio
    fills the form with them."""
    body = payload.model_dump(exclude_none=True)
    known = 0 < payload.model < 10**18
    # Read as the form checks it, so that the form takes this model, not reading it again.
    library = services.with_team_setting(DiffusionModel.objects.all(), project.team)
    model = library.filter(pk=payload.model).first() if known else None
    if model is not None:
        body = {**initial_parameters(model), **body, "model": model}
    loras = body.pop("loras", [])
    data = {name: value for name, value in body.items() if name not in UPLOAD_FIELDS}
    data["lora"] = [str(lora["id"]) for lora in loras]
    data["lora_weight"] = ["" if lora.get("weight") is None else str(lora["weight"])
                           for lora in loras]
    if "mask" in data:
        content = decode_image("mask", data.pop("mask"))
        data["mask_data"] = MASK_DATA_PREFIX + base64.b64encode(content).decode()
    files = {
        name: SimpleUploadedFile(f"{name}.png", decode_image(name, body[name]))
        for name in UPLOAD_FIELDS
        if body.get(name)
    }
    return data, files


def form_errors(form):
    errors = [
        {"field": None if name == "__all__" else API_NAMES.get(name, name), "message": message}
        for name, messages in form.errors.items()
        for message in messages
    ]
    detail = "; ".join(
        f"{error['field']}: {error['message']}" if error["field"] else error["message"]
        for error in errors
    )
    return errors, detail


def request_digest(project_id, body):
    return hashlib.sha256(f"{project_id}\n".encode() + body).hexdigest()


def idempotent_replay(request, key, digest):
    """The jobs an earlier request with this key made, or None for a first request (whose
    key is then recorded). Refuses a key reused with another body or still in progress."""
    if len(key) > 255:
        raise Problem(
            422, "Idempotency-Key: at most 255 characters.",
            errors=[{"field": "Idempotency-Key", "message": "At most 255 characters."}],
        )
    IdempotencyKey.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_KEY_TTL).delete()
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(user=request.user, key=key, request_digest=digest)
        return None
    except IntegrityError:
        earlier = IdempotencyKey.objects.get(user=request.user, key=key)
    if earlier.request_digest != digest:
        raise Problem(
            422, "This Idempotency-Key was used for a different request: use a new key.",
            errors=[{"field": "Idempotency-Key", "message": "Used for a different request."}],
        )
    if not earlier.job_ids:
        raise Problem(
            409, "A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )
    return earlier.job_ids


@router.post(
    "/projects/{project_id}/jobs",
    response={201: JobsCreatedOut},
    summary="Queue jobs from a recipe (`batch_count` jobs, all or none)",
    description=(
        "Send an `Idempotency-Key` header to make retries safe: a request repeated with the "
        "same key and body answers with the jobs the first one queued."
    ),
)
def jobs_create(request, project_id: int, payload: JobCreateIn):
    project = project_for(request, project_id, "generate")
    key = request.headers.get("Idempotency-Key", "").strip()
    digest = request_digest(project_id, request.body)
    if key:
        replayed = idempotent_replay(request, key, digest)
        if replayed is not None:
            jobs = with_details(GenerationJob.objects.filter(pk__in=replayed)).order_by("pk")
            return Status(201, {"jobs": jobs_out(jobs)})
    try:
        throttle(request, generate_rate_limited)
        jobs, loras = create(request, project, payload)
    except BaseException:
        if key:
            IdempotencyKey.objects.filter(user=request.user, key=key).delete()
        raise
    if key:
        IdempotencyKey.objects.filter(user=request.user, key=key).update(
            job_ids=[job.pk for job in jobs]
        )
    return Status(201, {"jobs": created_jobs_out(jobs, loras)})


def create(request, project, payload):
    """The jobs queued for `payload`, and their LoRA stack."""
    data, files = form_input(payload, project)
    form = GenerationForm(data, files, user=request.user, project=project)
    if form.is_valid():
        # Refusals past the form (quota, budget, suspension) are PermissionDenied: 403/429;
        # one that names a field (a blocked prompt) is that field's error, as in the form.
        try:
            jobs = services.jobs_create(
                user=request.user, project=project, params=form.cleaned_data
            )
        except admission.Refused as refusal:
            if refusal.field is None:
                raise
            form.add_error(refusal.field, str(refusal))
        else:
            return jobs, form.cleaned_data["loras"]
    errors, detail = form_errors(form)
    raise Problem(422, detail, errors=errors)

