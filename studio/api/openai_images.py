"""OpenAI's Images API on /v1/, so that apps built on the official `openai` package work
pointed at `base_url=<studio>/v1` with a studio token as their API key.

`images/generations`, `images/edits` (OpenAI's mask: its transparent pixels are redrawn,
an inpaint) and `images/variations` become the native recipe and go through the studio's
form and services (studio.api.waiting.recipe_run), so bounds, prompt policy, quotas and
rate limits refuse them as they refuse the browser; the request waits for the job, as
OpenAI's do. `model` is a model of the library by name, or (for OpenAI's own names, or
none) the token's default; `quality` scales the model's default steps; `url` responses
point at signed image URLs that expire after STUDIO_API_URL_SECONDS. Errors are OpenAI's
`{"error": {"message", "type", "param", "code"}}`, a bad parameter a 400 naming it.
"""

import base64
import io
import time
from typing import Literal

from django.conf import settings
from django.core import signing
from django.http import Http404, JsonResponse
from django.urls import reverse
from ninja import Form, NinjaAPI, Schema
from pydantic import BaseModel, ConfigDict, Field

from gallery.models import Image
from gallery.views import file_response
from generation.models import JobStatus
from generation.parameters_import import ParameterImportError, read_png_parameters
from generation.recipe import LIMITS
from studio.api.access import checkpoints, default_checkpoint, token_project
from studio.api.api import TokenAuth, add_error_handlers
from studio.api.jobs import API_NAMES
from studio.api.problems import Problem
from studio.api.waiting import recipe_run
from studio.uploads import UploadRejected, image_open_bounded

# Model names OpenAI's clients send by default: they mean "the studio's default model".
OPENAI_MODEL_PREFIXES = ("dall-e", "gpt-image")
# `quality` as a share of the model's default steps.
QUALITY_STEPS = {"low": 0.5, "medium": 1.0, "standard": 1.0, "auto": 1.0, "high": 1.5, "hd": 1.5}
# How much of the source an edit without a mask, or a variation, keeps.
VARIATION_STRENGTH = 0.6
# What OpenAI calls the recipe's fields, to name the parameter at fault.
OPENAI_NAMES = {"batch_size": "n", "width": "size", "height": "size", "steps": "quality",
                "source_upload": "image", "mask": "mask", "model": "model", "prompt": "prompt"}
URL_SALT = "studio.api.openai.image-url"


def openai_error(status, detail, *, title=None, errors=None, headers=None):
    """OpenAI's error body; a refused parameter is a 400 (OpenAI's status for it)."""
    if status == 422:
        status = 400
    kinds = {400: "invalid_request_error", 401: "invalid_request_error",
             403: "permission_error", 404: "invalid_request_error", 429: "rate_limit_error"}
    codes = {401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded",
             504: "timeout"}
    body = {"error": {
        "message": detail,
        "type": kinds.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": errors[0]["field"] if errors else None,
        "code": codes.get(status),
    }}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


openai_api = NinjaAPI(
    title="Studio: OpenAI Images API",
    version="1",
    description="OpenAI's Images API; use a studio token as the API key.",
    auth=[TokenAuth()],
    urls_namespace="openai-v1",
)
add_error_handlers(
    openai_api, openai_error, scheme="Bearer",
    how_to_authenticate="Send a studio token as the API key (`Authorization: Bearer <token>`).",
)


def refused(param, message):
    return Problem(400, f"{param}: {message}", errors=[{"field": param, "message": message}])


def openai_param(field):
    return OPENAI_NAMES.get(API_NAMES.get(field, field), field)


def model_for(request, project, name):
    models = list(checkpoints(request, project))
    if name and not name.startswith(OPENAI_MODEL_PREFIXES):
        for model in models:
            if model.name == name:
                return model
        raise Problem(404, f"The model `{name}` does not exist or you do not have access to it.",
                      errors=[{"field": "model", "message": "Unknown model."}])
    return default_checkpoint(request, models)


def size_of(size, model):
    if size in (None, "", "auto"):
        return model.default_width, model.default_height
    width, _, height = size.partition("x")
    if not (width.isdecimal() and height.isdecimal()):
        raise refused("size", "Give a size as WIDTHxHEIGHT, e.g. 512x512, or auto.")
    return int(width), int(height)


def steps_for(quality, model):
    least, most = LIMITS["steps"]
    return min(most, max(least, round(model.default_steps * QUALITY_STEPS[quality or "auto"])))


class ImageRequest(BaseModel):
    """What the three routes share; OpenAI's other parameters are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str | None = None
    n: int | None = Field(1, ge=1, le=10)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = "b64_json"
    user: str | None = None


class GenerationIn(ImageRequest):
    prompt: str = Field(..., min_length=1)
    quality: Literal["low", "medium", "standard", "auto", "high", "hd"] | None = None


class EditIn(GenerationIn):
    pass


class ImageDataOut(Schema):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesOut(Schema):
    created: int
    data: list[ImageDataOut]


def recipe(request, payload, *, prompt, quality=None):
    project = token_project(request)
    model = model_for(request, project, payload.model)
    width, height = size_of(payload.size, model)
    values = {"prompt": prompt, "model": model.pk, "width": width, "height": height,
              "steps": steps_for(quality, model), "batch_size": payload.n}
    return project, values


def respond(request, project, values, payload):
    jobs = recipe_run(request, project, values, field_name=openai_param)
    failed = [job for job in jobs if job.status == JobStatus.FAILED]
    if failed:
        raise Problem(500, f"The image could not be generated: {failed[0].error}")
    if any(job.status == JobStatus.CANCELED for job in jobs):
        raise Problem(409, "The job was canceled before it finished.")
    images = [image for job in jobs for image in sorted(job.images.all(), key=lambda i: i.pk)]
    return {"created": int(time.time()),
            "data": [image_data(request, image, payload.response_format) for image in images]}


def image_data(request, image, response_format):
    if response_format == "url":
        signed = signing.dumps(image.pk, salt=URL_SALT)
        path = reverse("openai-v1:openai-image-file", args=[signed])
        return {"url": request.build_absolute_uri(path)}
    with image.file.open("rb") as opened:
        return {"b64_json": base64.b64encode(opened.read()).decode()}


def upload_bytes(upload, param):
    if upload is None:
        raise refused(param, "Send the image as a file.")
    if upload.size > settings.STUDIO_MAX_UPLOAD_BYTES:
        raise Problem(413, f"{param}: the file is too large.",
                      errors=[{"field": param, "message": "Too large."}])
    return upload.read()


def redrawn_mask(data, param, size=None):
    """OpenAI's mask (transparent pixels are redrawn) as the studio's: a PNG white where it
    is redrawn. None for an image without transparency."""
    try:
        with image_open_bounded(data, max_pixels=settings.STUDIO_MAX_UPLOAD_PIXELS) as opened:
            if size is not None and opened.size != size:
                raise refused(param, "The mask must be the size of the image.")
            opened.load()
            if "A" not in opened.getbands() and "transparency" not in opened.info:
                return None
            alpha = opened.convert("RGBA").getchannel("A")
    except UploadRejected as error:
        raise refused(param, str(error)) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise refused(param, "The image is damaged or cut short and cannot be read.") from None
    buffer = io.BytesIO()
    alpha.point(lambda value: 255 if value == 0 else 0).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def image_size(data):
    try:
        with image_open_bounded(data, max_pixels=settings.STUDIO_MAX_UPLOAD_PIXELS) as opened:
            return opened.size
    except UploadRejected as error:
        raise refused("image", str(error)) from None


def first_image(request):
    """The edited image: `image`, or the first of `image[]` (newer clients send a list)."""
    uploads = request.FILES.getlist("image") or request.FILES.getlist("image[]")
    return uploads[0] if uploads else None


@openai_api.post("/images/generations", response=ImagesOut, tags=["images"])
def generations(request, payload: GenerationIn):
    project, values = recipe(request, payload, prompt=payload.prompt, quality=payload.quality)
    return respond(request, project, values, payload)


@openai_api.post(
    "/images/edits", response=ImagesOut, tags=["images"],
    summary="Redraw where the mask (or the image itself) is transparent; no mask and no "
    "transparency: the whole image, as img2img",
)
def edits(request, payload: Form[EditIn]):
    data = upload_bytes(first_image(request), "image")
    size = image_size(data)
    mask_upload = request.FILES.get("mask")
    if mask_upload is not None:
        mask = redrawn_mask(upload_bytes(mask_upload, "mask"), "mask", size)
        if mask is None:
            raise refused("mask", "The mask needs transparent pixels where the image is edited.")
    else:
        mask = redrawn_mask(data, "image")
    project, values = recipe(request, payload, prompt=payload.prompt, quality=payload.quality)
    values["source_upload"] = base64.b64encode(data).decode()
    if mask is None:
        values["strength"] = VARIATION_STRENGTH
    else:
        values["mask"] = mask
    return respond(request, project, values, payload)


@openai_api.post("/images/variations", response=ImagesOut, tags=["images"],
                 summary="Variations of an image: img2img of it with its own prompt, if it has one")
def variations(request, payload: Form[ImageRequest]):
    data = upload_bytes(first_image(request), "image")
    image_size(data)
    project, values = recipe(request, payload, prompt=prompt_in(data))
    values.update(source_upload=base64.b64encode(data).decode(), strength=VARIATION_STRENGTH)
    return respond(request, project, values, payload)


def prompt_in(data):
    """The prompt an image's metadata holds (the studio's, A1111's and the like), else a
    neutral one: a variation has no prompt of its own."""
    try:
        return read_png_parameters(data).values.get("prompt") or "an image"
    except ParameterImportError:
        return "an image"


class ModelOut(Schema):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelListOut(Schema):
    object: str = "list"
    data: list[ModelOut]


def model_out(model):
    return {"id": model.name, "created": int(model.created_at.timestamp()), "owned_by": "studio"}


@openai_api.get("/models", response=ModelListOut, tags=["models"],
                summary="The models the token may generate with")
def models_list(request):
    project = token_project(request, "view")
    return {"data": [model_out(model) for model in checkpoints(request, project)]}


@openai_api.get("/models/{model_id}", response=ModelOut, tags=["models"])
def model_get(request, model_id: str):
    for model in checkpoints(request, token_project(request, "view")):
        if model.name == model_id:
            return model_out(model)
    raise Http404


@openai_api.get("/images/files/{signed}", auth=None, response={200: None}, tags=["images"],
                url_name="openai-image-file",
                summary="An image of a `url` response: its signature authorises it, for a while")
def image_file(request, signed: str):
    try:
        image_id = signing.loads(signed, salt=URL_SALT, max_age=settings.STUDIO_API_URL_SECONDS)
    except signing.BadSignature:
        raise Problem(404, "This image link is unknown or has expired.") from None
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise Http404
    return file_response(image)
