import logging
from collections import defaultdict
from collections.abc import Mapping
from contextlib import nullcontext
from functools import partial
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import FilteredRelation, Model, Q, QuerySet, Value
from django.utils import timezone
from PIL import Image as PILImage

from generation import admission
from generation.choices import JobStatus, ModelKind
from generation.dispatch import enqueue_generation
from generation.loras.services import (
    LoraGone,
    job_lora_stack,
    job_loras_record,
    lora_stack_refusal,
)
from generation.models import GenerationJob
from generation.recipe import Recipe
from generation.seeds import random_seed, seed_after
from generation.wildcards.expansion import is_dynamic, job_prompts, team_wildcards
from studio.accounts.models import Project, Team, User
from studio.permissions import can
from studio.realtime.event_types import EventType
from studio.realtime.events import publish
from studio.storage import files_delete_on_rollback
from studio.uploads import upload_store

logger = logging.getLogger(__name__)


class ModelNotAllowed(PermissionDenied):
    """The user may not generate with this model in this project; the message says why."""


def job_create(*, user: User, project: Project, params: Mapping[str, Any]) -> GenerationJob:
    """Create a queued job from validated form data and dispatch it once committed."""
    loras = job_admit(user=user, project=project, params=params)
    # Before any transaction: a refused prompt is logged even when the caller rolls back.
    prompts_screen(user=user, project=project,
                   prompts=[(params["prompt"], params.get("negative_prompt", ""))])
    job = job_build(user=user, project=project, params=params)
    # Before the transaction too: a refusal is counted even when the caller rolls back.
    admission.run(admission.job_cost_checks, user=user, project=project, job=job, copies=1)
    return job_save(job=job, loras=loras)


def job_admit(*, user: User, project: Project, params: Mapping[str, Any]) -> list[Any]:
    """Refuse a job `user` may not queue here: their role, the model, the LoRA stack, the
    IP-Adapter. Returns its LoRA stack."""
    if not can(user, "generate", project):
        raise PermissionDenied("Your role in this project does not allow generating.")
    refusal = params["model"].refusal_reason(
        user, project.team, **fetched_team_setting(params["model"], project.team)
    )
    if refusal:
        raise ModelNotAllowed(f"You may not use “{params['model'].name}” here: {refusal}")
    loras = params.get("loras") or []
    refusal = lora_stack_refusal(project=project, model=params["model"], loras=loras)
    if refusal:
        raise ModelNotAllowed(refusal)
    adapter = params.get("ip_adapter_model")
    if adapter is not None:
        refusal = adapter.refusal_reason(user, project.team, kind=ModelKind.IP_ADAPTER,
                                         **fetched_team_setting(adapter, project.team))
        if refusal:
            raise ModelNotAllowed(
                f"You may not use the IP-Adapter “{adapter.name}” here: {refusal}"
            )
    return loras


def with_team_setting(models: QuerySet, team: Team) -> QuerySet:
    """`models`, each with `team`'s TeamModelSetting for it (or None) read in the same query:
    job_admit's check of a model the form found this way reads no setting of its own."""
    return models.annotate(
        team_setting=FilteredRelation("team_settings", condition=Q(team_settings__team=team)),
        team_setting_of=Value(team.pk),
    ).select_related("team_setting")


def fetched_team_setting(model: Model, team: Team) -> dict[str, Any]:
    """refusal_reason's `setting` for `model` in `team`, if with_team_setting read it."""
    if getattr(model, "team_setting_of", None) == team.pk:
        # select_related sets no attribute for a missing row of a filtered relation.
        return {"setting": getattr(model, "team_setting", None)}
    return {}


def prompts_screen(*, user: User, project: Project, prompts: list[tuple[str, str]]) -> None:
    """The apps above screen each distinct (prompt, negative prompt) once."""
    for prompt, negative_prompt in dict.fromkeys(prompts):
        admission.run(admission.prompt_checks, user=user, project=project, prompt=prompt,
                      negative_prompt=negative_prompt)


def job_save(*, job: GenerationJob, loras: list[Any]) -> GenerationJob:
    with transaction.atomic():
        job_insert(job=job, loras=loras)
        transaction.on_commit(partial(jobs_dispatch, [job]))
    return job


def job_insert(*, job: GenerationJob, loras: list[Any]) -> None:
    """The job's row and its LoRAs' (in the caller's transaction)."""
    job.save()
    if loras:  # (bulk_create opens a transaction even for no rows)
        job_loras_record(job=job, loras=loras)


# The library models and gallery images a job refers to, as GenerationForm names them.
JOB_RELATIONS = ("model", "source_image", "control_model", "control_image", "ip_adapter_model",
                 "ip_adapter_image", "remix_of")


def job_build(*, user: User, project: Project, params: Mapping[str, Any]) -> GenerationJob:
    """The job `params` (flat values, as GenerationForm's cleaned data) describe, not saved
    yet; its recipe leaves no seed random."""
    recipe = Recipe.from_flat(params)
    variation = recipe.variation
    job = GenerationJob(
        project=project,
        created_by=user,
        **recipe.job_fields(
            seed=random_seed() if recipe.seed is None else None,
            variation_seed=random_seed() if variation and variation.seed is None else None,
        ),
    )
    # The objects the form already fetched: the checks and the save don't fetch them again.
    for name in JOB_RELATIONS:
        if isinstance(params.get(name), Model):
            setattr(job, name, params[name])
    return job


def jobs_create(
    *, user: User, project: Project, params: Mapping[str, Any]
) -> list[GenerationJob]:
    """`batch_count` jobs (A1111's "Batch count"), all or none. As in A1111, each image's
    seed follows the previous one's: job n starts at seed + n * batch_size."""
    count = params.get("batch_count") or 1
    seed = params.get("seed")
    seed = random_seed() if seed is None else seed
    batch_size = params.get("batch_size") or 1
    # Uploaded images are stored once and shared by the jobs: storage names from here on.
    # Should a check below refuse the jobs (prompt policy, quota), none of them is kept.
    with files_delete_on_rollback(default_storage) as written:
        for name in ("source_upload", "mask_data", "control_upload", "ip_adapter_upload"):
            if isinstance(params.get(name), PILImage.Image):
                params = {**params, name: upload_store(params[name], project=project)}
                written.append(params[name])
        typed = (params["prompt"], params.get("negative_prompt") or "")
        wildcards = team_wildcards(project.team) if any(map(is_dynamic, typed)) else {}
        prompts = job_prompts({**params, "seed": seed}, wildcards)
        # The prompts as typed (a variant not picked is screened too: the job keeps the text
        # as its template) and each job's as it will run them, each distinct one once.
        prompts_screen(user=user, project=project, prompts=[typed, *prompts])
        loras = job_admit(user=user, project=project, params=params)
        jobs = [
            job_build(
                user=user,
                project=project,
                params={
                    **params,
                    "seed": seed_after(seed, n * batch_size),
                    **expansion_params(params, *prompts[n]),
                },
            )
            for n in range(count)
        ]
        # The jobs differ only in seeds and prompts, which cost nothing: one is costed for all.
        admission.run(admission.job_cost_checks, user=user, project=project, job=jobs[0],
                      copies=count)
        # One job without LoRAs is one INSERT, atomic by itself: no BEGIN and COMMIT to send.
        with transaction.atomic() if len(jobs) > 1 or loras else nullcontext():
            for job in jobs:
                job_insert(job=job, loras=loras)
            # Outside a transaction, this runs now: the row is committed.
            transaction.on_commit(partial(jobs_dispatch, jobs))
        return jobs


def expansion_params(params: Mapping[str, Any], prompt: str, negative: str) -> dict[str, str]:
    """A job's expanded prompts, and the text as typed as their templates where it had
    variants or wildcards."""
    typed, typed_negative = params["prompt"], params.get("negative_prompt") or ""
    return {
        "prompt": prompt,
        "negative_prompt": negative,
        "template": typed if is_dynamic(typed) else "",
        "negative_template": typed_negative if is_dynamic(typed_negative) else "",
    }


def job_dispatch(job: GenerationJob) -> None:
    """Hand a committed job to the workers and tell the project's members it is waiting."""
    jobs_dispatch([job])


def jobs_dispatch(jobs: list[GenerationJob]) -> None:
    """Hand committed jobs to the workers and tell the projects' members they are waiting,
    with their places in line (read once for all of them). Each job keeps the place it was
    announced with as `announced_position`, for the caller's answer."""
    for job in jobs:
        try:
            enqueue_generation(job.pk)
        except Exception:
            # It stays queued: the sweeper sends its message once the broker is back.
            logger.exception("Could not enqueue job %s; the sweeper will", job.pk)
    positions = GenerationJob.objects.positions()
    for job in jobs:
        job.announced_position = positions.get(job.pk)
        publish(
            job.project.events_group(),
            job.event_payload(type=EventType.JOB_QUEUED, position=job.announced_position),
        )


def publish_queue_positions() -> None:
    """Tell every waiting job its new place in line: one event per project with waiting
    jobs (not one per job), so a change to a long queue stays cheap."""
    positions = GenerationJob.objects.positions()
    by_project = defaultdict(list)
    for pk, project_id in GenerationJob.objects.queued().order_by().values_list("pk", "project_id"):
        if pk in positions:
            by_project[project_id].append([pk, positions[pk]])
    for project_id, project_positions in by_project.items():
        publish(
            Project(pk=project_id).events_group(),
            {
                "type": EventType.QUEUE_POSITIONS,
                "project_id": project_id,
                "positions": project_positions,
            },
        )


def job_announce_worker_starting(*, job_id: int) -> None:
    """Tell a still-queued job's project that a worker is starting up to run it: a cold
    worker spends tens of seconds importing torch before it can claim anything."""
    job = GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).first()
    if job is not None:
        publish(
            Project(pk=job.project_id).events_group(),
            job.event_payload(type=EventType.JOB_PREPARING, stage="worker"),
        )


def job_cancel(*, job: GenerationJob, user: User) -> bool:
    """Cancel a queued job (it never runs) or ask a running one to stop at its next step.

    Returns False when the job had already ended (nothing to cancel).
    """
    if not job.may_cancel(user):
        raise PermissionDenied("Only the job's author or a project admin may cancel it.")
    if not job.is_active():
        return False
    now = timezone.now()
    if GenerationJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELED,
        error=f"Canceled by {user.get_username()} before it started.",
        finished_at=now,
    ):
        job.refresh_from_db()
        publish(job.project.events_group(), job.event_payload(type=EventType.JOB_CANCELED))
        publish_queue_positions()
        return True
    # Running on a worker that died (its lease lapsed): nobody would read the flag below.
    if GenerationJob.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, lease_expires_at__lt=now
    ).update(
        status=JobStatus.CANCELED,
        cancel_requested_at=now,
        error=f"Canceled by {user.get_username()}; its worker had stopped.",
        finished_at=now,
    ):
        job.refresh_from_db()
        publish(job.project.events_group(), job.event_payload(type=EventType.JOB_CANCELED))
        return True
    # Running (or just claimed): the worker checks this flag after every step.
    return bool(
        GenerationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            cancel_requested_at=now
        )
    )


def jobs_cancel_queued(*, user: User, by: User, team: Team | None = None) -> int:
    """Cancel every queued job of `user` (only those in `team`'s projects, when given) for
    `by`: the user themselves, or an admin of `team`. One update and one event per project,
    whatever the number of jobs. Returns how many were canceled."""
    if by != user and (team is None or not can(by, "manage_members", team)):
        raise PermissionDenied("Only team admins may cancel a member's jobs.")
    jobs = GenerationJob.objects.queued().filter(created_by=user)
    if team is not None:
        jobs = jobs.filter(project__team=team)
    with transaction.atomic():
        canceled = list(jobs.select_for_update().values_list("pk", "project_id"))
        GenerationJob.objects.filter(pk__in=[pk for pk, _ in canceled]).update(
            status=JobStatus.CANCELED,
            error=f"Canceled by {by.get_username()} before it started.",
            finished_at=timezone.now(),
        )
    by_project = defaultdict(list)
    for pk, project_id in canceled:
        by_project[project_id].append(pk)
    for project_id, job_ids in by_project.items():
        publish(
            Project(pk=project_id).events_group(),
            {"type": EventType.JOBS_CANCELED, "project_id": project_id, "job_ids": job_ids},
        )
    if canceled:
        publish_queue_positions()
    return len(canceled)


def job_retry(*, job: GenerationJob, user: User) -> GenerationJob:
    """A new queued job with the same parameters (seed included) as a failed or canceled one."""
    if not job.may_retry(user):
        raise PermissionDenied("Only failed or canceled jobs can be retried, by an editor.")
    try:
        loras = job_lora_stack(job)
    except LoraGone as error:
        raise ModelNotAllowed(str(error)) from error
    # The same stored files, not copies: uploads are never changed once stored.
    params = {
        **job.recipe().to_flat(),
        **{name: getattr(job, name) for name in JOB_RELATIONS},
        "loras": loras,
    }
    return job_create(user=user, project=job.project, params=params)


def job_set_priority(*, job: GenerationJob, user: User, priority: int) -> bool:
    """Team admins move a waiting job ahead (or back) in the queue."""
    if not can(user, "manage", job):
        raise PermissionDenied("Only team admins may change a job's priority.")
    updated = GenerationJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        priority=priority
    )
    if updated:
        job.priority = priority
        publish_queue_positions()
    return bool(updated)
