from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import FileUploadHandler
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from gallery.models import Image
from generation import admission, services
from generation import queue as job_queue
from generation.forms import GenerationForm
from generation.models import (
    DiffusionModel,
    GenerationJob,
    JobMode,
    JobPriority,
    JobStatus,
    Lora,
    ModelKind,
)
from generation.parameters_import import (
    ParameterImportError,
    display_name,
    lora_hashes_match,
    match_model,
    model_hash_note,
    read_png_parameters,
    shorten,
)
from generation.remix import GALLERY_IMAGE_FIELDS, remix_parameters, usable_gallery_images
from generation.styles.applying import styles_in_prompts, team_styles
from studio.accounts.models import Project
from studio.permissions import can, require
from studio.realtime.event_types import JOB_STATUS_EVENT_TYPES
from studio.throttling import generate_rate_limited, import_rate_limited

RECENT_JOBS = 20
RECENT_IMAGES = 60
MY_QUEUE_JOBS = 100


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
        "sampler": model.default_sampler,
    }


def recent_jobs(project, user):
    """The project's latest jobs, each queued one with its place in the whole queue and
    what `user` may do to it."""
    jobs = list(
        project.jobs.select_related("created_by", "model")
        .prefetch_related("job_loras")
        .order_by("-created_at", "-id")[:RECENT_JOBS]
    )
    positions, seconds_left = {}, {}
    if any(job.status == JobStatus.QUEUED for job in jobs):
        positions = GenerationJob.objects.positions()
    if any(job.is_active() for job in jobs):
        seconds_left = job_queue.wait_estimator(positions=positions)
    is_admin, may_generate = can(user, "manage", project), can(user, "generate", project)
    for job in jobs:
        job.position = positions.get(job.pk)
        job.seconds_left = seconds_left.get(job.pk)
        job.can_cancel = job.is_active() and (is_admin or job.created_by_id == user.pk)
        job.can_duplicate = may_generate
        job.can_retry = may_generate and job.status in (JobStatus.FAILED, JobStatus.CANCELED)
        job.can_raise_priority = (
            is_admin and job.status == JobStatus.QUEUED and job.priority < JobPriority.URGENT
        )
    return jobs


def studio_context(request, project, form=None, *, jobs=True, gallery=True):
    """The studio page's context; `jobs` (the queue) and `gallery` (the latest images) are
    left out for the answers that render the generate form alone or with the queue (HTMX
    posts): each is a few queries and rows those answers never show."""
    # Only the models this user may generate with here, whichever way the form was made.
    models = DiffusionModel.objects.available_to(request.user, project)
    default_model = models.default()
    if form is None:
        form = GenerationForm(initial=initial_parameters(default_model), models=models)
    form.fields["model"].queryset = models
    form.fields["ip_adapter_model"].queryset = DiffusionModel.objects.available_to(
        request.user, project, kind=ModelKind.IP_ADAPTER
    ).order_by("name")
    form.offer_styles(project.team)
    images = list(project.images.order_by("-created_at", "-id")[:RECENT_IMAGES]) if gallery else []
    return {
        "project": project,
        "form": form,
        "jobs": recent_jobs(project, request.user) if jobs else [],
        "images": images,
        "latest_image": images[0] if images else None,
        "may_generate": can(request.user, "generate", project),
        "has_models": default_model is not None,
        "library_is_empty": default_model is None and not DiffusionModel.objects.exists(),
    }


@login_required
@require_GET
def project_studio(request, project_id):
    project = project_for(request.user, project_id, "view")
    form = None
    notice = None
    if "remix" in request.GET:
        # "Remix" on a gallery image the user may see (generation.remix says how much).
        image = remix_image_for(request.user, request.GET["remix"])
        default_model = DiffusionModel.objects.available_to(request.user, project).default()
        initial, notice = remix_parameters(
            user=request.user, image=image, project=project, default_model=default_model
        )
        form = GenerationForm(initial=initial)
    elif "duplicate" in request.GET:
        # Any job the user may see, also from another project, fills the form.
        source = job_for(request.user, request.GET["duplicate"], "view")
        initial = source.parameters()
        # Gallery images deleted since the job ran, or the user can't pick: leave them out.
        used = [initial[field] for field in GALLERY_IMAGE_FIELDS if initial.get(field)]
        usable = usable_gallery_images(request.user, used) if used else set()
        for field in GALLERY_IMAGE_FIELDS:
            if initial.get(field) and initial[field] not in usable:
                initial[field] = None
        # Remix of one image of the job (gallery): that image's own seed, alone.
        image_id = request.GET.get("image", "")
        image = (
            source.images.filter(pk=image_id).first()
            if image_id.isdecimal() and len(image_id) <= 18 else None
        )
        if image is not None:
            initial.update(seed=image.seed, batch_size=1)
            if "variations" in request.GET and source.mode == JobMode.TXT2IMG:
                # Close variations of that image: its seed, new variation seeds.
                initial.update(batch_size=4, variation_strength=0.25, variation_seed=None)
        form = GenerationForm(initial=initial)
    elif "source" in request.GET:
        # "Use as source" on an image the user may see: img2img from it.
        image = source_image_for(request.user, request.GET["source"])
        default_model = DiffusionModel.objects.available_to(request.user, project).default()
        initial = {
            **initial_parameters(default_model),
            "prompt": image.prompt,
            "negative_prompt": image.negative_prompt,
            "width": image.width,
            "height": image.height,
            "source_image": image.pk,
        }
        form = GenerationForm(initial=initial)
    context = studio_context(request, project, form)
    context["import_notice"] = notice
    return render(request, "generation/studio.html", context)


def remix_image_for(user, image_id):
    """A live image with a job, that `user` may see; else 404."""
    image = None
    if str(image_id).isdecimal() and len(str(image_id)) <= 18:
        image = (
            Image.objects.select_related("project__team", "job__model", "job__control_model",
                                         "job__ip_adapter_model")
            .filter(pk=image_id, job__isnull=False)
            .first()
        )
    if image is None or not image.may_view(user):
        raise Http404
    return image


def source_image_for(user, image_id):
    if not str(image_id).isdecimal() or len(str(image_id)) > 18:
        raise Http404
    image = get_object_or_404(Image.objects.select_related("project__team"), pk=image_id)
    require(user, "view", image.project)
    return image


def job_for(user, job_id, action):
    if not str(job_id).isdecimal() or len(str(job_id)) > 18:
        raise Http404
    job = get_object_or_404(
        GenerationJob.objects.select_related("project__team", "created_by"), pk=job_id
    )
    require(user, action, job.project)
    return job


def job_list_response(request, job, *, status=200, message=""):
    """The job's project queue (for HTMX) or back to its studio page."""
    if message:
        messages.add_message(request, messages.ERROR if status >= 400 else messages.INFO, message)
    if not request.htmx:
        return redirect(job.project)
    context = {"project": job.project, "jobs": recent_jobs(job.project, request.user)}
    return render(request, "generation/studio.html#job-list", context, status=status)


@login_required
@require_POST
def job_cancel(request, job_id):
    job = job_for(request.user, job_id, "view")
    if not job.may_cancel(request.user):
        raise PermissionDenied("Only the job's author or a project admin may cancel it.")
    if not services.job_cancel(job=job, user=request.user):
        return job_list_response(
            request, job, status=409, message="This job has already ended; nothing to cancel."
        )
    return job_list_response(request, job)


@login_required
@require_POST
@generate_rate_limited
def job_retry(request, job_id):
    job = job_for(request.user, job_id, "generate")
    if not job.may_retry(request.user):
        return job_list_response(
            request, job, status=409, message="Only failed or canceled jobs can be retried."
        )
    try:
        services.job_retry(job=job, user=request.user)
    except services.ModelNotAllowed as error:
        return job_list_response(request, job, status=403, message=str(error))
    except admission.Refused as refusal:  # moderation, a limit or the budget
        return job_list_response(
            request, job, status=refusal.status_code, message=str(refusal)
        )
    return job_list_response(request, job)


@login_required
@require_POST
def job_priority(request, job_id):
    job = job_for(request.user, job_id, "manage")
    try:
        priority = JobPriority(int(request.POST.get("priority", "")))
    except ValueError:
        allowed = ", ".join(f"{value} ({label})" for value, label in JobPriority.choices)
        return job_list_response(
            request, job, status=422, message=f"Priority must be one of {allowed}."
        )
    if not services.job_set_priority(job=job, user=request.user, priority=priority):
        return job_list_response(
            request, job, status=409, message="Only a waiting job's priority can change."
        )
    return job_list_response(request, job)


@login_required
@require_GET
def my_queue(request):
    """The user's own jobs across every project: waiting and running first, then recent."""
    # Teams the user has left keep their jobs but no longer show them.
    jobs = list(
        GenerationJob.objects.filter(
            created_by=request.user, project__team__memberships__user=request.user
        )
        .select_related("project__team", "model")
        .order_by("-created_at", "-id")[:MY_QUEUE_JOBS]
    )
    if any(job.status == JobStatus.QUEUED for job in jobs):
        positions = GenerationJob.objects.positions()
        for job in jobs:
            job.position = positions.get(job.pk)
    active = [job for job in jobs if job.is_active()]
    ended = [job for job in jobs if not job.is_active()]
    return render(request, "generation/my_queue.html", {"active": active, "ended": ended})


@login_required
@require_POST
@generate_rate_limited
def job_create(request, project_id):
    project = project_for(request.user, project_id, "generate")
    form = GenerationForm(request.POST, request.FILES, user=request.user, project=project)
    if form.is_valid():
        try:
            services.jobs_create(user=request.user, project=project, params=form.cleaned_data)
        except admission.Refused as refusal:
            # A per-user limit, the team's budget or moderation, named (on the field it names,
            # for a blocked prompt); nothing was made.
            form.add_error(refusal.field, str(refusal))
    if not form.is_valid():
        page = not request.htmx  # else the form alone
        context = studio_context(request, project, form=form, jobs=page, gallery=page)
        template = "generation/studio.html"
        if request.htmx:
            template += "#generate-form"
        return render(request, template, context, status=422)
    if not request.htmx:
        return redirect(project)
    if not request.POST.get("replace_form"):
        return generate_accepted(request, project)
    # The form shows errors or an import's notice (studio.html sets replace_form): a fresh
    # one replaces it, keeping what the user typed (the seed goes back to random).
    source = form.cleaned_data["source_image"]
    params = {
        **form.cleaned_data,
        **form.typed_prompts,  # the styles stay picked: not their text in the prompt too
        "model": form.cleaned_data["model"].pk,
        "seed": None,
        "source_image": source.pk if source else None,
        "source_upload": None,
        "mask_data": "",  # a new source needs a new mask
        "control_model": control.pk if (control := form.cleaned_data["control_model"]) else None,
        "control_image": image.pk if (image := form.cleaned_data["control_image"]) else None,
        "control_upload": None,
        "ip_adapter_model": adapter.pk
        if (adapter := form.cleaned_data["ip_adapter_model"])
        else None,
        "ip_adapter_image": image.pk if (image := form.cleaned_data["ip_adapter_image"]) else None,
        "ip_adapter_upload": None,
        "remix_of": remix.pk if (remix := form.cleaned_data["remix_of"]) else None,
    }
    context = studio_context(request, project, form=GenerationForm(initial=params), gallery=False)
    return render(request, "generation/studio.html#generate-response", context)


def generate_accepted(request, project):
    """The answer to accepted jobs when the form has nothing to clear: the form stays as the
    user left it (HX-Reswap: none), its seed back to random, and the queue shows the new
    jobs, both out of band. Rendering the whole form again, with the model, LoRA and style
    choices it lists, cost most of this request."""
    seed = GenerationForm()["seed"]  # a fresh form's: empty, which is random
    seed.field.widget.attrs["hx-swap-oob"] = "true"
    context = {"project": project, "jobs": recent_jobs(project, request.user), "seed": seed}
    response = render(request, "generation/generate_accepted.html", context)
    response["HX-Reswap"] = "none"
    return response


@login_required
@require_GET
def project_jobs(request, project_id):
    project = project_for(request.user, project_id, "view")
    context = {"project": project, "jobs": recent_jobs(project, request.user)}
    return render(request, "generation/studio.html#job-list", context)


@login_required
@require_GET
def job_status(request, job_id):
    """The job's state over HTTP, so a page that missed socket messages can catch up."""
    job = get_object_or_404(GenerationJob.objects.select_related("project__team"), pk=job_id)
    require(request.user, "view", job.project)
    return JsonResponse(
        job.event_payload(
            type=JOB_STATUS_EVENT_TYPES[job.status],
            position=job.queue_position(),
            error=job.error,
            images=[image.event_payload() for image in job.images.all()],
        )
    )


# -- Import parameters from an image ------------------------------------------------------


class ImportUploadLimit(FileUploadHandler):
    """Passes on at most one byte past the limit of the `image` file (enough for the import
    to say it is too large) and nothing of any other file, so an oversized upload never
    reaches memory or disk whatever its headers claim."""

    def __init__(self, request, limit):
        super().__init__(request)
        self.limit = limit

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        self.keep = field_name == "image"

    def receive_data_chunk(self, raw_data, start):
        if not self.keep or start > self.limit:
            return None
        return raw_data[: self.limit + 1 - start]

    def file_complete(self, file_size):
        return None


def current_parameters(data, models):
    """What the form held when the user imported; kept wherever the image says nothing."""
    default_model = models.default()
    if "prompt" not in data:  # not posted from the form: start from the model's defaults
        return initial_parameters(default_model)
    values = {
        name: data.get(name)
        for name in GenerationForm.base_fields
        if name in data and name not in ("source_upload", "control_upload")
    }
    values["hires_fix"] = bool(data.get("hires_fix"))  # an unticked box is not posted
    values["styles"] = data.getlist("styles")  # every box ticked
    posted = data.get("model", "")
    model = (
        models.filter(pk=posted).first() if posted.isdecimal() and len(posted) <= 18 else None
    )
    values["model"] = (model or default_model).pk if (model or default_model) else None
    return values


def form_data(values):
    """Form data (as a browser would post it) for values of GenerationForm fields."""
    data = {}
    for name, value in values.items():
        if value is None or value is False:
            continue
        if isinstance(value, list):  # a multiple choice: each value, as posted
            data[name] = value
            continue
        data[name] = "on" if value is True else str(value)
    return data


def import_response(request, project, form, notice, *, status=200):
    page = not request.htmx  # else the form alone
    context = studio_context(request, project, form=form, jobs=page, gallery=page)
    context["import_notice"] = notice
    template = "generation/studio.html"
    if request.htmx:
        template += "#generate-form"
    return render(request, template, context, status=status)


@csrf_exempt  # checked by _parameters_import, once the upload limit is in place
@login_required
@require_POST
@import_rate_limited
def parameters_import(request, project_id):
    """Fill the generate form from the parameters embedded in an image (this studio,
    AUTOMATIC1111, Civitai, ComfyUI, InvokeAI, NovelAI, Fooocus); the form is not
    submitted."""
    limit = settings.STUDIO_MAX_UPLOAD_BYTES
    request.upload_handlers.insert(0, ImportUploadLimit(request, limit))
    return _parameters_import(request, project_id, limit)


@csrf_protect
def _parameters_import(request, project_id, limit):
    project = project_for(request.user, project_id, "generate")
    models = DiffusionModel.objects.available_to(request.user, project)
    current = current_parameters(request.POST, models)
    upload = request.FILES.get("image")
    file_name = display_name(upload.name if upload else "")
    try:
        if upload is None:
            raise ParameterImportError(
                "Choose a PNG, WebP or JPEG image to import its parameters."
            )
        imported = read_png_parameters(upload, max_bytes=limit)
    except ParameterImportError as error:
        notice = {"level": "error", "title": f"Nothing imported from {file_name}",
                  "text": str(error)}
        form = GenerationForm(initial=current, models=models)
        return import_response(request, project, form, notice, status=422)

    model = match_model(imported.model_name, models, imported.model_hash)
    lora_hashes_match(imported=imported, loras=Lora.objects.for_team(project.team).enabled())
    not_applied = list(imported.not_applied)
    hash_note = model_hash_note(model, imported.model_hash)
    if hash_note:
        not_applied.insert(0, hash_note)
    if imported.model_name and model is None:
        kept = models.filter(pk=current.get("model")).first()
        not_applied.insert(
            0,
            f"Model: {shorten(imported.model_name)} (not in your library; "
            f"kept {kept.name if kept else 'none'})",
        )
    values = {**current, **imported.values}
    if model is not None:
        values["model"] = model.pk
    if "prompt" in imported.values:
        # As A1111 reads a pasted infotext (its default, "Apply if any"): the team's styles
        # whose text the prompts hold are picked, and their text taken out of them.
        found, prompt, negative = styles_in_prompts(
            values["prompt"], values.get("negative_prompt") or "",
            team_styles(project.team).values(),
        )
        if found:
            values.update(prompt=prompt, negative_prompt=negative, styles=found)
    # The form stays the one validator: imported values it refuses show as field errors.
    form = GenerationForm(form_data(values), models=models, user=request.user)
    form.offer_styles(project.team)
    if form.is_valid():
        form = GenerationForm(initial=values, models=models)
    applied = ", ".join(imported.applied_labels(model_applied=model is not None))
    notice = {
        "level": "warning" if not_applied or form.is_bound else "success",
        "title": f"Imported from {file_name} ({imported.source_label})",
        "text": f"Filled: {applied}." + (" Check the highlighted fields." if form.is_bound else ""),
        "not_applied": not_applied,
    }
    return import_response(request, project, form, notice)
