from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation import services
from generation.forms import GenerationForm
from generation.models import DiffusionModel, GenerationJob, JobStatus
from studio.accounts.models import Project
from studio.permissions import can, require

RECENT_JOBS = 20
RECENT_IMAGES = 60


def project_for(user, project_id, action):
    project = get_object_or_404(Project.objects.select_related("team"), pk=project_id)
    return require(user, action, project)


def initial_parameters(model):
    if model is None:
        return {}
    return {
        "model": model.pk,
        "steps": model.default_steps,
        "guidance_scale": model.default_guidance_scale,
        "width": model.default_width,
        "height": model.default_height,
    }


def recent_jobs(project):
    """The project's latest jobs, each queued one with its place in the whole queue."""
    jobs = list(project.jobs.order_by("-created_at", "-id")[:RECENT_JOBS])
    if any(job.status == JobStatus.QUEUED for job in jobs):
        queue = GenerationJob.objects.queued().order_by("created_at", "id")
        positions = {pk: n for n, pk in enumerate(queue.values_list("pk", flat=True), start=1)}
        for job in jobs:
            job.position = positions.get(job.pk)
    return jobs


def studio_context(request, project, form=None):
    models = DiffusionModel.objects.usable()
    default_model = models.first()
    if form is None:
        form = GenerationForm(initial=initial_parameters(default_model), models=models)
    images = list(project.images.order_by("-created_at", "-id")[:RECENT_IMAGES])
    return {
        "project": project,
        "form": form,
        "jobs": recent_jobs(project),
        "images": images,
        "latest_image": images[0] if images else None,
        "may_generate": can(request.user, "generate", project),
        "has_models": default_model is not None,
    }


@login_required
@require_GET
def project_studio(request, project_id):
    project = project_for(request.user, project_id, "view")
    return render(request, "generation/studio.html", studio_context(request, project))


@login_required
@require_POST
def job_create(request, project_id):
    project = project_for(request.user, project_id, "generate")
    form = GenerationForm(request.POST)
    if not form.is_valid():
        context = studio_context(request, project, form=form)
        template = "generation/studio.html"
        if request.htmx:
            template += "#generate-form"
        return render(request, template, context, status=422)
    job = services.job_create(user=request.user, project=project, params=form.cleaned_data)
    if not request.htmx:
        return redirect(project)
    # Keep what the user typed (the seed goes back to random) and show the new job.
    params = {**form.cleaned_data, "model": form.cleaned_data["model"].pk, "seed": None}
    context = studio_context(request, project, form=GenerationForm(initial=params))
    context["new_job"] = job
    return render(request, "generation/studio.html#generate-response", context)


@login_required
@require_GET
def project_jobs(request, project_id):
    project = project_for(request.user, project_id, "view")
    context = {"project": project, "jobs": recent_jobs(project)}
    return render(request, "generation/studio.html#job-list", context)


@login_required
@require_GET
def job_status(request, job_id):
    """The job's state over HTTP, so a page that missed socket messages can catch up."""
    job = get_object_or_404(GenerationJob.objects.select_related("project__team"), pk=job_id)
    require(request.user, "view", job.project)
    return JsonResponse(
        job.event_payload(
            type=f"job.{job.status}",
            position=job.queue_position(),
            error=job.error,
            images=[image.event_payload() for image in job.images.all()],
        )
    )
