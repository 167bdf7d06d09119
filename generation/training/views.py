"""Training runs: started from a subject's page, watched live on their own page (progress,
loss chart, samples, log over the project's socket, the state re-read over HTTP), canceled
by their author or a project admin. Only members of the run's project see it (others 404)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from generation import admission
from generation.models import DiffusionModel, JobStatus
from generation.training.models import TrainingRun, TrainingSample
from generation.training.services import (
    trainable_models,
    training_estimate,
    training_run_cancel,
    training_run_create,
)
from generation.training.subjects.forms import TrainingForm
from generation.training.subjects.views import detail_context, subject_for
from studio.accounts.models import Project
from studio.permissions import can, require


def run_for(user, run_id):
    run = get_object_or_404(
        TrainingRun.objects.select_related(
            "project", "project__team", "subject", "model", "lora", "created_by"
        ),
        pk=run_id,
    )
    require(user, "view", run.project)
    return run


def training_form_for(request, subject):
    """The training form bound to the post, its models those of the posted project."""
    projects = [
        project for project in Project.objects.filter(team=subject.team)
        if can(request.user, "generate", project)
    ]
    posted = request.POST.get("project", "")
    project = next((p for p in projects if str(p.pk) == posted), projects[0] if projects else None)
    models = (
        trainable_models(request.user, project) if project else DiffusionModel.objects.none()
    )
    return TrainingForm(request.POST, projects=projects, models=models, subject=subject)


@login_required
@require_POST
def training_start(request, subject_id):
    subject = subject_for(request.user, subject_id, "manage")
    form = training_form_for(request, subject)
    if form.is_valid():
        data = form.cleaned_data
        try:
            run = training_run_create(
                subject=subject, project=data["project"], user=request.user, params=data
            )
        except ValidationError as error:
            form.add_error("model" if error.code == "model" else None, error)
        except admission.Refused as refusal:
            form.add_error(None, str(refusal))
        else:
            messages.success(request, f"Training of “{subject.name}” is queued.")
            return redirect(run)
    context = detail_context(request, subject, training_form=form)
    return render(request, "generation/subject_detail.html", context, status=422)


@login_required
@require_POST
def training_estimate_view(request, subject_id):
    """The memory and time estimate for the form as it stands (HTMX, on every change)."""
    subject = subject_for(request.user, subject_id, "manage")
    form = training_form_for(request, subject)
    estimate = None
    if form.is_valid():
        estimate = training_estimate(form.cleaned_data["model"], form.cleaned_data)
    return render(
        request,
        "generation/subject_detail.html#training-estimate",
        {"estimate": estimate, "training_form": form},
    )


@login_required
@require_GET
def training_detail(request, run_id):
    run = run_for(request.user, run_id)
    context = {
        "run": run,
        "subject": run.subject,
        "team": run.project.team,
        "samples": run.samples.all(),
        "may_cancel": run.may_cancel(request.user),
        "statuses": JobStatus,
    }
    template = "generation/training_detail.html"
    if request.htmx and request.htmx.target == "training-state":
        template += "#training-state"
    return render(request, template, context)


@login_required
@require_POST
def training_cancel(request, run_id):
    run = run_for(request.user, run_id)
    if run.created_by_id != request.user.pk:
        require(request.user, "manage", run.project)  # 403 for other members
    if not run.is_active():
        messages.info(request, "This run has already ended.")
        return redirect(run)
    run = training_run_cancel(run=run, user=request.user)
    if run.status == JobStatus.CANCELED:
        messages.success(request, "Training canceled. Its log is kept.")
    else:
        messages.success(request, "Canceling: the run stops at its next step.")
    return redirect(run)


@login_required
@require_GET
def training_sample_file(request, sample_id):
    sample = get_object_or_404(TrainingSample.objects.select_related("run__project"), pk=sample_id)
    require(request.user, "view", sample.run.project)
    try:
        opened = sample.file.open("rb")
    except FileNotFoundError as error:
        raise Http404("The sample is missing from storage.") from error
    return FileResponse(opened, content_type="image/png")
