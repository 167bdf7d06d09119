"""AUTOMATIC1111's web UI API, /sdapi/v1/, for the clients and tools that speak it.

Requests and responses keep A1111's names and shapes (its modules/api/models.py):
`txt2img` and `img2img` answer with `images` (base64 PNGs carrying their infotext),
`parameters` (the request) and `info` (a JSON string). A generation request is turned into
the native API's recipe (studio.api.jobs.JobCreateIn) and goes through the same form and
services as the studio's, so bounds, prompt policy, permissions, quotas and rate limits
refuse it alike; then the request waits for its jobs (studio.api.waiting).

A token authenticates as `Authorization: Bearer <token>` or as HTTP Basic
`username:token` (A1111's --api-auth). Jobs go to the first project of the token in which
it may generate (a token limited to one project picks it); the model is the request's
`override_settings.sd_model_checkpoint`, else the token's default (POST /options), else the
first one the caller may use. Fields A1111 has and the studio does not apply are accepted
and listed in `info.not_applied`, as the PNG import lists them.

FLUX.1 and SD 3.x models take Forge's fields (lllyasviel/stable-diffusion-webui-forge: its
API models are modules/processing.py's dataclass fields, modules/api/models.py): FLUX.1's
guidance is `distilled_cfg_scale` and its `cfg_scale` is 1 (the studio runs FLUX.1 without
CFG); their samplers are the flow ones with Forge's FLUX.1 schedule, Simple. Neither Forge nor
Forge Neo has a shift field: Neo (Haoming02/sd-webui-forge-classic, branch neo,
modules/processing.py: `set_shift(shift=self.distilled_cfg_scale)`) sends a shift as
`distilled_cfg_scale` to its models that take one, none of which is FLUX.1 or SD 3.x. So these
jobs run the model's shift; the native API (/api/v1/jobs) takes `shift`.
"""

import base64
import json
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import JsonResponse
from django.utils import timezone
from ninja import Body, Field, NinjaAPI, Schema
from ninja.errors import AuthenticationError
from ninja.security import HttpBasicAuth
from pydantic import BaseModel, ConfigDict

from generation import services
from generation.choices import FLOW_FAMILIES, ModelFamily
from generation.models import DiffusionModel, Embedding, GenerationJob, JobStatus, Lora, ModelKind
from generation.parameters_import import ParameterImportError, read_png_parameters
from generation.parameters_import.a1111 import FLOW_SCHEDULE_TYPE
from generation.parameters_import.common import HIRES_UPSCALER, ImportedParameters, sampler_name_for
from gpu_workers.samplers import FLOW_SAMPLERS, SAMPLERS, UNIFORM_SCHEDULE
from studio.api.access import (
    checkpoints,
    default_checkpoint,
    token_of,
    token_project,
    visible_projects,
)
from studio.api.api import TokenAuth, add_error_handlers
from studio.api.jobs import decode_image
from studio.api.models import ApiToken
from studio.api.problems import Problem
from studio.api.tokens import token_for_secret
from studio.api.waiting import recipe_run
from studio.uploads import UploadRejected, image_open_bounded


class BasicTokenAuth(HttpBasicAuth):
    """A1111's --api-auth: HTTP Basic with the user's name and a token as the password."""

    def authenticate(self, request, username, password):
        token = token_for_secret(password)
        if token is None or token.user.get_username() != username:
            raise AuthenticationError(401, "The user name or token is wrong, expired or revoked.")
        request.user = token.user
        return token


def a1111_error(status, detail, *, title=None, errors=None, headers=None):
    """A refusal as A1111's exception handler writes it ({error, detail, body, errors}), its
    `errors` naming the fields at fault."""
    body = {"error": title or error_name(status), "detail": detail, "body": "",
            "errors": errors or []}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_name(status):
    return HTTPStatus(status).phrase.replace(" ", "")


sdapi = NinjaAPI(
    title="Studio: AUTOMATIC1111 API",
    version="1",
    description=(
        "AUTOMATIC1111's /sdapi/v1 for its clients: authenticate with HTTP Basic "
        "`username:token` or `Authorization: Bearer <token>`."
    ),
    auth=[TokenAuth(), BasicTokenAuth()],
    urls_namespace="sdapi-v1",
)
add_error_handlers(
    sdapi, a1111_error, scheme="Basic",
    how_to_authenticate="Authenticate with HTTP Basic `username:token` or a Bearer token.",
)


# -- Where a request generates, with what ------------------------------------------------


def title_of(model):
    """A1111's checkpoint title: "name [short hash]"."""
    short = model.a1111_hash()
    return f"{model.name} [{short}]" if short else model.name


def model_named(models, name):
    """The model a client names by title, name or short hash; None if none matches."""
    wanted = name.strip()
    bare = wanted.split(" [", 1)[0]
    for model in models:
        if wanted in (title_of(model), model.name, model.a1111_hash()) or bare == model.name:
            return model
    return None


def chosen_model(request, project, name, field):
    models = list(checkpoints(request, project))
    if name:
        model = model_named(models, name)
        if model is None:
            raise Problem(
                422, f"{field}: no model {name!r} that you may use (see GET /sdapi/v1/sd-models).",
                errors=[{"field": field, "message": f"Unknown model {name!r}."}],
            )
        return model
    return default_checkpoint(request, models)


# -- Requests ----------------------------------------------------------------------------


class GenerationIn(BaseModel):
    """Fields both A1111 generation routes share; others are accepted and reported (a
    pydantic model: ninja's Schema drops the extra fields)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str | None = ""
    steps: int | None = None
    cfg_scale: float | None = Field(None, description="FLUX.1: 1 or left out (no CFG).")
    distilled_cfg_scale: float | None = Field(
        None, description="Forge's: FLUX.1's distilled guidance (empty: the model's); other "
                          "families have none.",
    )
    sampler_name: str | None = None
    sampler_index: str | None = Field(None, description="Deprecated A1111 name of the sampler.")
    scheduler: str | None = Field(None, description="Schedule type; empty: Automatic.")
    seed: int | None = -1
    subseed: int | None = -1
    subseed_strength: float | None = 0
    width: int | None = None
    height: int | None = None
    batch_size: int | None = 1
    n_iter: int | None = 1
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    alwayson_scripts: dict[str, Any] | None = None


class Txt2ImgIn(GenerationIn):
    enable_hr: bool | None = False
    hr_scale: float | None = 2.0
    hr_second_pass_steps: int | None = 0
    hr_upscaler: str | None = None
    hr_distilled_cfg: float | None = Field(
        None, description="Forge's: FLUX.1's hires pass runs the first pass's guidance."
    )


class Img2ImgIn(GenerationIn):
    init_images: list[str] = Field(..., min_length=1, description="Base64 images; the first one.")
    mask: str | None = Field(None, description="Base64 PNG, white where it is redrawn.")
    inpainting_mask_invert: int | None = 0


class ImagesOut(Schema):
    images: list[str]
    parameters: dict[str, Any]
    info: str


# Request fields that change nothing at these values (A1111's defaults and what clients
# such as webuiapi send by default); any other value of a field not applied is reported.
NO_EFFECT = {
    "eta": 1.0, "s_noise": 1.0, "send_images": True, "override_settings_restore_afterwards": True,
    "mask_blur": 4, "mask_blur_x": 4, "mask_blur_y": 4, "inpaint_full_res": True,
    "inpaint_full_res_padding": 32, "initial_noise_multiplier": 1.0, "resize_mode": 0,
    "seed_resize_from_h": -1, "seed_resize_from_w": -1, "sampler_index": "Euler",
}
# Always so here: every image is saved in the project's gallery.
CONSUMED = {"save_images"}
# What A1111 calls the recipe's fields, to name the field at fault in refusals.
A1111_NAMES = {
    "guidance_scale": "cfg_scale", "sampler": "sampler_name", "batch_count": "n_iter",
    "variation_seed": "subseed", "variation_strength": "subseed_strength",
    "hires_scale": "hr_scale", "hires_steps": "hr_second_pass_steps",
    "hires_strength": "denoising_strength", "strength": "denoising_strength",
    "source_upload": "init_images", "clip_skip": "override_settings.CLIP_stop_at_last_layers",
    "model": "override_settings.sd_model_checkpoint",
}
CONTROLNET_FIELD = "alwayson_scripts.controlnet.args"


def has_effect(name, value):
    return value not in (None, "", [], {}, False, 0) and NO_EFFECT.get(name) != value


def unapplied(body, notes):
    for name, value in (body.model_extra or {}).items():
        if name not in CONSUMED and has_effect(name, value):
            notes.report(name, json.dumps(value) if not isinstance(value, str) else value)


def controlnet_units(body):
    scripts = {name.lower(): value for name, value in (body.alwayson_scripts or {}).items()}
    controlnet = scripts.get("controlnet") or {}
    units = (controlnet.get("args") or []) if isinstance(controlnet, dict) else None
    if not isinstance(units, list):
        raise refused(CONTROLNET_FIELD, "A list of ControlNet units.")
    return [(number, unit) for number, unit in enumerate(units)
            if isinstance(unit, dict) and unit.get("enabled", True)]


def unit_image(unit, field):
    image = unit.get("image") or unit.get("input_image")
    if isinstance(image, dict):  # {"image": ..., "mask": ...} of the extension's older API
        image = image.get("image")
    if not isinstance(image, str) or not image:
        raise refused(f"{field}.image", "Send the unit's image as base64.")
    return image


def refused(field, message):
    return Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])


def auxiliary_model(kind, name, field):
    bare = str(name or "").split(" [", 1)[0].strip()
    model = DiffusionModel.objects.usable().filter(kind=kind, name=bare).first()
    if model is None:
        raise refused(field, f"No {ModelKind(kind).label} model {name!r} here.")
    return model


def no_model(name):
    """Whether a unit names no model: the extension's "None" (or nothing)."""
    return str(name or "None").split(" [", 1)[0].strip() in ("None", "")


def apply_controlnet(body, values):
    """The ControlNet extension's units: canny as the ControlNet, ip-adapter_* as the
    IP-Adapter (the two the studio runs), and an image with no module and no model as the
    control image a FLUX.1 Depth or Canny checkpoint reads itself (the form refuses it for
    any other checkpoint, naming the unit)."""
    for number, unit in controlnet_units(body):
        field = f"{CONTROLNET_FIELD}.{number}"
        module = str(unit.get("module") or "").lower()
        if module in ("none", "") and no_model(unit.get("model")):
            values["control_upload"] = unit_image(unit, field)
        elif module == "canny":
            values["control_model"] = auxiliary_model(
                ModelKind.CONTROLNET, unit.get("model"), f"{field}.model"
            ).pk
            values["control_upload"] = unit_image(unit, field)
            values["control_scale"] = unit.get("weight", 1.0)
            values["control_low_threshold"] = unit.get("threshold_a")
            values["control_high_threshold"] = unit.get("threshold_b")
        elif module.startswith("ip-adapter"):
            values["ip_adapter_model"] = auxiliary_model(
                ModelKind.IP_ADAPTER, unit.get("model"), f"{field}.model"
            ).pk
            values["ip_adapter_upload"] = unit_image(unit, field)
            values["ip_adapter_scale"] = unit.get("weight", 1.0)
        else:
            raise refused(
                f"{field}.module",
                "Only the canny and ip-adapter modules run here, and module none with model "
                "None for a FLUX.1 Depth or Canny checkpoint's control image.",
            )


def guidance_scale_of(model, body):
    """The recipe's guidance scale: FLUX.1's distilled guidance is Forge's
    `distilled_cfg_scale` beside a CFG scale of 1; other families' CFG scale is `cfg_scale`."""
    if model.family == ModelFamily.FLUX1:
        if body.cfg_scale is not None and body.cfg_scale != 1:
            raise refused("cfg_scale", f"{model.name} is a FLUX.1 model, which runs its "
                                       "distilled guidance without CFG here: send cfg_scale 1 "
                                       "or leave it out, and the guidance as "
                                       "distilled_cfg_scale.")
        return body.distilled_cfg_scale
    if body.distilled_cfg_scale is not None:
        raise refused("distilled_cfg_scale", f"{model.name} is a {model.get_family_display()} "
                                             "model: only FLUX.1 models take a distilled "
                                             "guidance; send its guidance as cfg_scale.")
    return body.cfg_scale


def sampler_of(model, sampler, scheduler, notes):
    """The recipe's sampler for A1111's sampler and schedule type. FLUX.1 and SD 3.x run the
    flow samplers on their own schedule, Forge's Simple (other schedule types are reported)."""
    if model.family not in FLOW_FAMILIES:
        name = sampler_name_for(sampler, scheduler or "Automatic", notes)
        if name is None:
            raise refused("sampler_name", f"No sampler {sampler!r} here (GET /sdapi/v1/samplers).")
        return name
    name = {flow.lower(): flow for flow in FLOW_SAMPLERS}.get(sampler.strip().lower())
    if name is None:
        raise refused("sampler_name", f"{model.get_family_display()} models run "
                                      f"{' or '.join(FLOW_SAMPLERS)} here, not {sampler!r}.")
    schedule = (scheduler or "").strip()
    if schedule.lower() not in ("", "automatic", FLOW_SCHEDULE_TYPE.lower()):
        notes.report("scheduler", f"{schedule} ({model.get_family_display()} models run "
                                  f"{FLOW_SCHEDULE_TYPE})")
    return name


def recipe_values(request, project, body, notes):
    """The native recipe (JobCreateIn's fields) an A1111 request asks for, and its model."""
    overrides = dict(body.override_settings or {})
    model = chosen_model(
        request, project, overrides.pop("sd_model_checkpoint", None),
        "override_settings.sd_model_checkpoint",
    )
    values = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt or "",
        "model": model.pk,
        "steps": body.steps,
        "guidance_scale": guidance_scale_of(model, body),
        "width": body.width,
        "height": body.height,
        "clip_skip": overrides.pop("CLIP_stop_at_last_layers", None),
        "batch_size": body.batch_size,
        "batch_count": body.n_iter,
        "seed": None if body.seed in (None, -1) else body.seed,
    }
    for name, value in overrides.items():
        notes.report(f"override_settings.{name}", str(value))
    sampler = body.sampler_name or body.sampler_index
    if sampler:
        values["sampler"] = sampler_of(model, sampler, body.scheduler, notes)
    if body.subseed_strength:
        values["variation_strength"] = body.subseed_strength
        values["variation_seed"] = None if body.subseed in (None, -1) else body.subseed
    apply_controlnet(body, values)
    unapplied(body, notes)
    return values, model


def txt2img_values(request, project, body, notes):
    values, model = recipe_values(request, project, body, notes)
    if body.enable_hr:
        values.update(
            hires_fix=True, hires_scale=body.hr_scale, hires_steps=body.hr_second_pass_steps,
            hires_strength=body.denoising_strength,
        )
        if body.hr_upscaler and body.hr_upscaler != HIRES_UPSCALER:
            notes.report("hr_upscaler", f"{body.hr_upscaler} (the hires fix uses "
                                        f"{HIRES_UPSCALER})")
        hires_guidance = body.hr_distilled_cfg
        if model.family == ModelFamily.FLUX1 and hires_guidance not in (
            None, values["guidance_scale"]
        ):
            notes.report("hr_distilled_cfg", f"{hires_guidance:g} (the hires pass runs the "
                                             "first pass's distilled_cfg_scale)")
    return values, model


def img2img_values(request, project, body, notes):
    values, model = recipe_values(request, project, body, notes)
    if body.inpainting_mask_invert:
        raise refused("inpainting_mask_invert", "Send the mask white where it is redrawn.")
    values.update(source_upload=body.init_images[0], strength=body.denoising_strength)
    if len(body.init_images) > 1:
        notes.report("init_images", f"{len(body.init_images) - 1} after the first")
    if body.mask:
        values["mask"] = body.mask
    return values, model


def a1111_field_names(model):
    """How a request on `model` names the recipe's fields (FLUX.1's guidance is Forge's
    distilled_cfg_scale)."""
    names = dict(A1111_NAMES)
    if model.family == ModelFamily.FLUX1:
        names["guidance_scale"] = "distilled_cfg_scale"

    def a1111_field(field):
        if field and field.startswith(("control_", "ip_adapter_")):
            return CONTROLNET_FIELD
        return names.get(field, field)

    return a1111_field


def generate(request, body, build):
    """Queue the request's jobs through the studio's form and wait for them."""
    project = token_project(request)
    notes = ImportedParameters(source="a1111")
    values, model = build(request, project, body, notes)
    jobs = recipe_run(request, project, values, field_name=a1111_field_names(model))
    return images_response(jobs, body, notes)


def images_response(jobs, body, notes):
    failed = [job for job in jobs if job.status == JobStatus.FAILED]
    if failed:
        raise Problem(500, f"The job failed: {failed[0].error or 'no reason given'}",
                      title="JobFailed")
    images = [image for job in jobs for image in sorted(job.images.all(), key=lambda i: i.pk)]
    encoded = []
    for image in images:
        with image.file.open("rb") as opened:
            encoded.append(base64.b64encode(opened.read()).decode())
    first = jobs[0]
    # As Forge reports FLUX.1's: a CFG scale of 1, the guidance as its distilled one.
    distilled = first.model.family == ModelFamily.FLUX1
    parameters = body.model_dump()
    if "init_images" in parameters:  # as A1111 without include_init_images
        parameters.update(init_images=None, mask=None)
    info = {
        "prompt": first.prompt,
        "all_prompts": [image.prompt for image in images],
        "negative_prompt": first.negative_prompt,
        "all_negative_prompts": [image.negative_prompt for image in images],
        "seed": images[0].seed if images else first.seed,
        "all_seeds": [image.seed for image in images],
        "subseed": first.variation_seed or -1,
        "all_subseeds": [job.variation_seed or -1 for job in jobs for _ in job.images.all()],
        "subseed_strength": first.variation_strength or 0,
        "width": first.width,
        "height": first.height,
        "sampler_name": first.sampler,
        "cfg_scale": 1 if distilled else first.guidance_scale,
        "distilled_cfg_scale": first.guidance_scale if distilled else None,
        "shift": first.shift,
        "steps": first.steps,
        "batch_size": first.batch_size,
        "restore_faces": False,
        "sd_model_name": first.model.name,
        "sd_model_hash": first.model.a1111_hash(),
        "denoising_strength": first.strength if first.mode != "txt2img" else None,
        "clip_skip": first.clip_skip,
        "index_of_first_image": 0,
        "infotexts": [image.parameters for image in images],
        "styles": [],
        "job_timestamp": first.created_at.strftime("%Y%m%d%H%M%S"),
        "interrupted": any(job.status == JobStatus.CANCELED for job in jobs),
        "job_ids": [job.pk for job in jobs],
        "image_ids": [image.pk for image in images],
        "not_applied": notes.not_applied,
    }
    return {"images": encoded, "parameters": parameters, "info": json.dumps(info)}


@sdapi.post("/txt2img", response=ImagesOut, tags=["generation"])
def txt2img(request, payload: Txt2ImgIn):
    return generate(request, payload, txt2img_values)


@sdapi.post("/img2img", response=ImagesOut, tags=["generation"],
            summary="img2img; with a mask, inpainting")
def img2img(request, payload: Img2ImgIn):
    return generate(request, payload, img2img_values)


# -- Progress and interrupt --------------------------------------------------------------


class ProgressOut(Schema):
    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None


def callers_active_jobs(request):
    return GenerationJob.objects.active().filter(
        created_by=request.user, project__in=visible_projects(request).values("pk")
    )


@sdapi.get("/progress", response=ProgressOut, tags=["generation"],
           summary="The caller's running job: progress 0..1 and the seconds left")
def progress(request, skip_current_image: bool = False):
    active = callers_active_jobs(request)
    job = active.filter(status=JobStatus.RUNNING).order_by("started_at", "pk").first()
    state = {"skipped": False, "interrupted": False, "stopping_generation": False,
             "job": "", "job_count": active.count(), "job_timestamp": "0", "job_no": 0,
             "sampling_step": 0, "sampling_steps": 0}
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state}
    done = job.progress_percent() / 100
    elapsed = (timezone.now() - job.started_at).total_seconds() if job.started_at else 0.0
    state.update(job=f"job {job.pk}", job_timestamp=job.started_at.strftime("%Y%m%d%H%M%S")
                 if job.started_at else "0", sampling_step=job.progress_step,
                 sampling_steps=job.total_steps())
    preview = None if skip_current_image else job.latest_preview()
    return {
        "progress": done,
        "eta_relative": elapsed / done - elapsed if done else 0.0,
        "state": state,
        # A1111 sends the preview as plain base64 (a JPEG here).
        "current_image": preview.split(",", 1)[1] if preview else None,
        "textinfo": f"Job {job.pk}: step {job.progress_step} of {job.total_steps()}",
    }


@sdapi.post("/interrupt", tags=["generation"],
            summary="Cancel the caller's queued and running jobs")
def interrupt(request):
    for job in callers_active_jobs(request).select_related("project"):
        services.job_cancel(job=job, user=request.user)
    return {}


@sdapi.post("/skip", tags=["generation"], summary="As interrupt: a job has no image to skip to")
def skip(request):
    return interrupt(request)


@sdapi.get("/scripts", response=dict[str, list[str]], tags=["generation"],
           summary="A1111's scripts: none here (clients ask before sending extensions' args)")
def scripts(request):
    return {"txt2img": [], "img2img": []}


# -- Models, samplers, libraries ---------------------------------------------------------


class SDModelOut(Schema):
    model_config = ConfigDict(protected_namespaces=())

    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None = None


class SamplerOut(Schema):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerOut(Schema):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float | None = None
    need_inner_model: bool | None = None


class UpscalerOut(Schema):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LoraItemOut(Schema):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any]


class EmbeddingItemOut(Schema):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int
    vectors: int


class EmbeddingsOut(Schema):
    loaded: dict[str, EmbeddingItemOut]
    skipped: dict[str, EmbeddingItemOut]


@sdapi.get("/sd-models", response=list[SDModelOut], tags=["library"])
def sd_models(request):
    return [
        {"title": title_of(model), "model_name": model.name, "hash": model.a1111_hash(),
         "sha256": model.sha256 or None, "filename": model.source}
        for model in checkpoints(request, token_project(request, "view"))
    ]


@sdapi.get("/samplers", response=list[SamplerOut], tags=["library"],
           summary="Every family's samplers; FLUX.1 and SD 3.x models run "
                   f"{' and '.join(FLOW_SAMPLERS)}")
def samplers(request):
    return [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS]


@sdapi.get("/schedulers", response=list[SchedulerOut], tags=["library"],
           summary="Schedule types: Automatic (the sampler's default), Uniform, Karras; "
                   "Simple, the one FLUX.1 and SD 3.x models run")
def schedulers(request):
    named = sorted({sampler.schedule_type for sampler in SAMPLERS.values()} - {None})
    types = ["Automatic", UNIFORM_SCHEDULE, *named, FLOW_SCHEDULE_TYPE]
    return [{"name": label.lower(), "label": label,
             "default_rho": 7.0 if label == "Karras" else None} for label in types]


@sdapi.get("/upscalers", response=list[UpscalerOut], tags=["library"],
           summary="The hires fix's upscaler")
def upscalers(request):
    return [{"name": "None"}, {"name": HIRES_UPSCALER, "scale": 4}]


@sdapi.get("/loras", response=list[LoraItemOut], tags=["library"],
           summary="The token team's LoRAs, for `<lora:name:weight>` in prompts")
def loras(request):
    team_loras = Lora.objects.for_team(token_of(request).team).order_by("name")
    return [{"name": lora.name, "alias": lora.name, "path": lora.file.name,
             "metadata": lora.metadata or {}} for lora in team_loras]


@sdapi.get("/embeddings", response=EmbeddingsOut, tags=["library"])
def embeddings(request):
    # A vector's length: SD 1.x's CLIP-L; SDXL's two encoders side by side.
    shapes = {"sdxl": 2048}
    loaded = {
        embedding.name: {"shape": shapes.get(embedding.family, 768), "vectors": embedding.vectors}
        for embedding in Embedding.objects.for_team(token_of(request).team).order_by("name")
    }
    return {"loaded": loaded, "skipped": {}}


@sdapi.get("/options", response=dict[str, Any], tags=["options"],
           summary="The settings A1111 clients read: the model (the token's default) and more")
def options_get(request):
    project = token_project(request, "view")
    model = chosen_model(request, project, None, "sd_model_checkpoint")
    return {"sd_model_checkpoint": title_of(model), "sd_checkpoint_hash": model.sha256 or None,
            "CLIP_stop_at_last_layers": 1, "samples_format": "png",
            "upscaler_for_img2img": HIRES_UPSCALER}


@sdapi.post("/options", tags=["options"],
            summary="Set `sd_model_checkpoint`: the token's default model; other keys ignored")
def options_set(request, payload: Body[dict[str, Any]]):
    name = payload.get("sd_model_checkpoint")
    if name is not None:
        if not isinstance(name, str):
            raise refused("sd_model_checkpoint", "A model's title or name.")
        token = token_of(request)
        model = chosen_model(request, token_project(request, "view"), name,
                             "sd_model_checkpoint")
        ApiToken.objects.filter(pk=token.pk).update(default_model=model)
    return JsonResponse(None, safe=False)  # A1111 answers null


# -- PNG info ----------------------------------------------------------------------------


class PngInfoIn(Schema):
    image: str = Field(..., description="A base64 PNG, WebP or JPEG.")


class PngInfoOut(Schema):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


@sdapi.post("/png-info", response=PngInfoOut, tags=["png-info"],
            summary="An image's infotext, and its fields as the studio's import reads them")
def png_info(request, payload: PngInfoIn):
    data = decode_image("image", payload.image) if payload.image else b""
    if not data:
        return {"info": "", "items": {}, "parameters": {}}
    try:
        with image_open_bounded(data, max_pixels=settings.STUDIO_MAX_UPLOAD_PIXELS) as image:
            texts = {key: value for key, value in image.info.items() if isinstance(value, str)}
    except UploadRejected as error:
        raise refused("image", str(error)) from None
    info = texts.pop("parameters", "")
    if not info and "studio" not in texts:
        return {"info": "", "items": texts, "parameters": {}}
    try:
        imported = read_png_parameters(data)
    except ParameterImportError as error:
        raise refused("image", str(error)) from None
    parameters = {**imported.values, "model": imported.model_name,
                  "model_hash": imported.model_hash, "not_applied": imported.not_applied}
    return {"info": info, "items": texts, "parameters": parameters}
