"""The caller's usage and limits, prompt history, collections and LoRA training runs."""

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db.models import Q, Sum
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from gallery.collections.models import Collection
from gallery.collections.services import CollectionRefused, collection_add_images
from gallery.models import Image
from generation.models import GenerationJob, Subject, TrainingRun
from generation.prompt_history import clean_query, prompt_entries
from generation.training.services import (
    trainable_models,
    training_run_cancel,
    training_run_create,
)
from generation.training.subjects.forms import TrainingForm
from gpu_workers.training_plan import PRESET_FIELDS, presets_for
from studio.api.access import (
    allowed,
    by_id,
    project_for,
    request_token,
    require,
    require_write,
    team_for,
    visible_projects,
    visible_teams,
)
from studio.api.problems import Problem
from studio.quotas.models import effective_limits
from studio.quotas.services import team_budget_status

router = Router()


# -- Usage and limits ---------------------------------------------------------------------


class BudgetOut(Schema):
    period: str
    limit_gpu_seconds: float
    used_gpu_seconds: float
    resets: datetime


class UsageOut(Schema):
    team_id: int
    limits: dict[str, int] = Field(
        ..., description="Per-user limits in this team (max_active_images, ...)."
    )
    active_images: int = Field(..., description="Your images queued or running, all teams.")
    images_last_hour: int
    budgets: list[BudgetOut]


@router.get(
    "/teams/{team_id}/usage", response=UsageOut, tags=["usage"],
    summary="The caller's usage against the team's limits, and its GPU budgets",
)
def usage_get(request, team_id: int):
    team = team_for(request, team_id, "view")
    mine = GenerationJob.objects.filter(created_by=request.user)
    hour_ago = timezone.now() - timedelta(hours=1)
    return {
        "team_id": team.pk,
        "limits": effective_limits(team),
        "active_images": mine.active().aggregate(n=Sum("batch_size"))["n"] or 0,
        "images_last_hour": mine.filter(created_at__gt=hour_ago)
        .aggregate(n=Sum("batch_size"))["n"] or 0,
        "budgets": [
            {"period": row["period"], "limit_gpu_seconds": row["limit"],
             "used_gpu_seconds": row["used"], "resets": row["resets"]}
            for row in team_budget_status(team=team)
        ],
    }


# -- Prompt history -----------------------------------------------------------------------


class PromptOut(Schema):
    prompt: str
    negative_prompt: str
    runs: int
    image_count: int
    favourite: bool
    latest_job_id: int
    project_id: int
    model: str
    image_ids: list[int]


class PromptPageOut(Schema):
    items: list[PromptOut]
    next_page: int | None


class PromptFilters(Schema):
    q: str = Field("", description="Words the prompt contains.")
    project: int | None = None
    favourites: bool = False
    page: int = Field(1, ge=1, le=10_000)


@router.get(
    "/prompts", response=PromptPageOut, tags=["prompts"],
    summary="The caller's prompt history, one entry per prompt, newest run first",
)
def prompts_list(request, filters: Query[PromptFilters]):
    projects = visible_projects(request)
    if filters.project is not None:
        projects = projects.filter(pk=project_for(request, filters.project, "view").pk)
    jobs = GenerationJob.objects.filter(created_by=request.user, project__in=projects.values("pk"))
    entries, more = prompt_entries(
        user=request.user, jobs=jobs, query=clean_query(filters.q),
        favourites_only=filters.favourites, page=filters.page,
    )
    return {
        "items": [
            {
                "prompt": entry.prompt,
                "negative_prompt": entry.latest.negative_prompt,
                "runs": entry.runs,
                "image_count": entry.image_count,
                "favourite": entry.is_favourite,
                "latest_job_id": entry.latest.pk,
                "project_id": entry.latest.project_id,
                "model": entry.latest.model.name,
                "image_ids": [image.pk for image in entry.images],
            }
            for entry in entries
        ],
        "next_page": filters.page + 1 if more else None,
    }


# -- Collections --------------------------------------------------------------------------


class CollectionOut(Schema):
    id: int
    team_id: int
    project_id: int | None
    name: str
    description: str
    visibility: str
    updated_at: datetime


class CollectionDetailOut(CollectionOut):
    image_ids: list[int]


class CollectionImagesIn(Schema):
    model_config = ConfigDict(extra="forbid")

    image_ids: list[int] = Field(..., min_length=1, max_length=500)


def collections_visible(request):
    """Collections the caller may open, within a token's team (and projects)."""
    projects = visible_projects(request).values("pk")
    return Collection.objects.visible_to(request.user).filter(
        Q(project__isnull=True) | Q(project__in=projects),
        team__in=visible_teams(request).values("pk"),
    )


def collection_out(collection):
    return {
        "id": collection.pk,
        "team_id": collection.team_id,
        "project_id": collection.project_id,
        "name": collection.name,
        "description": collection.description,
        "visibility": collection.visibility,
        "updated_at": collection.updated_at,
    }


def collection_detail(request, collection):
    images = collection.images_for(request.user)
    return {**collection_out(collection), "image_ids": [image.pk for image in images]}


@router.get("/collections", response=list[CollectionOut], tags=["collections"])
def collections_list(request, team: int | None = None):
    collections = collections_visible(request)
    if team is not None:
        collections = collections.filter(team_id=team)
    return [collection_out(collection) for collection in collections]


@router.get("/collections/{collection_id}", response=CollectionDetailOut, tags=["collections"])
def collection_get(request, collection_id: int):
    return collection_detail(request, by_id(collections_visible(request), collection_id))


@router.post(
    "/collections/{collection_id}/images", response=CollectionDetailOut, tags=["collections"],
    summary="Add images (ids the caller may see) at the end; all or none",
)
def collection_images_add(request, collection_id: int, payload: CollectionImagesIn):
    collection = by_id(collections_visible(request), collection_id)
    require_write(request)
    visible_images = set(
        Image.objects.filter(
            pk__in=payload.image_ids, project__in=visible_projects(request).values("pk")
        ).values_list("pk", flat=True)
    )
    if request_token(request) is not None and set(payload.image_ids) - visible_images:
        # A token adds only its own projects' images (the user might see more).
        raise Problem(
            422, "image_ids: some of the images can't be found.",
            errors=[{"field": "image_ids", "message": "Some images can't be found."}],
        )
    try:
        collection_add_images(
            collection=collection, user=request.user, image_ids=payload.image_ids
        )
    except CollectionRefused as refusal:
        raise Problem(
            422, refusal.messages[0],
            errors=[{"field": "image_ids", "message": refusal.messages[0]}],
        ) from refusal
    return collection_detail(request, collection)


# -- Training runs ------------------------------------------------------------------------


class TrainingRunIn(Schema):
    """A DreamBooth-LoRA run of a subject. A preset fills the fields left out."""

    model_config = ConfigDict(extra="forbid")

    project: int
    model: int
    preset: str = "balanced"
    steps: int | None = None
    learning_rate: float | None = None
    rank: int | None = None
    resolution: int | None = Field(None, description="Empty: the model's default width.")
    batch_size: int | None = None
    seed: int | None = None
    train_text_encoder: bool | None = None
    prior_preservation: bool | None = None
    fp8_base: bool | None = Field(
        None, description="FLUX.1 and SD 3.x: the frozen transformer stored in fp8 (less memory)."
    )
    class_images: int | None = 50
    sample_prompt: str = ""
    sample_every: int = 100


class TrainingRunOut(Schema):
    id: int
    subject_id: int
    project_id: int
    model: str
    status: str
    step: int
    steps: int
    progress_percent: int
    error: str
    lora_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def run_out(run):
    return {
        "id": run.pk,
        "subject_id": run.subject_id,
        "project_id": run.project_id,
        "model": run.model.name,
        "status": run.status,
        "step": run.progress_step,
        "steps": run.steps,
        "progress_percent": run.progress_percent(),
        "error": run.error,
        "lora_id": run.lora_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def run_for(request, run_id):
    run = by_id(TrainingRun.objects.select_related("project__team", "model"), run_id)
    require(request, "view", run.project)
    return run


@router.post(
    "/subjects/{subject_id}/training-runs", response={201: TrainingRunOut}, tags=["training"],
    summary="Train a LoRA of a subject (its consent and images checked as in the studio)",
)
def training_run_create_view(request, subject_id: int, payload: TrainingRunIn):
    subject = by_id(Subject.objects.select_related("team"), subject_id)
    require(request, "manage_subjects", subject.team)
    project = project_for(request, payload.project, "generate")
    if project.team_id != subject.team_id:
        raise Problem(
            422, "project: not in the subject's team.",
            errors=[{"field": "project", "message": "Choose a project of the subject's team."}],
        )
    models = trainable_models(request.user, project)
    chosen = models.filter(pk=payload.model).first()
    # The chosen model's family's presets (FLUX.1 and SD 3.x have their own, under SD's names).
    preset = presets_for(chosen.family if chosen else None).get(payload.preset, {})
    data = {name: value for name, value in payload.model_dump().items() if value is not None}
    for name in PRESET_FIELDS:
        data.setdefault(name, preset.get(name))
    if "resolution" not in data:
        data["resolution"] = chosen.default_width if chosen else 512
    # The browser's form: booleans as a form posts them (absent when false).
    form_data = {name: value for name, value in data.items() if value is not False}
    form = TrainingForm(form_data, projects=[project], models=models, subject=subject)
    if not form.is_valid():
        errors = [
            {"field": None if name == "__all__" else name, "message": message}
            for name, messages in form.errors.items() for message in messages
        ]
        raise Problem(422, "; ".join(e["message"] for e in errors), errors=errors)
    try:
        run = training_run_create(
            subject=subject, project=project, user=request.user, params=form.cleaned_data
        )
    except ValidationError as error:
        field = "model" if error.code == "model" else None
        raise Problem(
            422, error.messages[0], errors=[{"field": field, "message": error.messages[0]}]
        ) from error
    return Status(201, run_out(run))


@router.get("/training-runs/{run_id}", response=TrainingRunOut, tags=["training"])
def training_run_get(request, run_id: int):
    return run_out(run_for(request, run_id))


@router.post("/training-runs/{run_id}/cancel", response=TrainingRunOut, tags=["training"])
def training_run_cancel_view(request, run_id: int):
    run = run_for(request, run_id)
    if not (run.created_by_id == request.user.pk or allowed(request, "manage", run.project)):
        raise Problem(403, "Only its author or a project admin may cancel this run.")
    if not run.is_active():
        raise Problem(409, "This run has already ended; nothing to cancel.")
    return run_out(training_run_cancel(run=run, user=request.user))
