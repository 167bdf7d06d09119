"""Gallery images: list, one with its metadata and lineage, and the file itself."""

from datetime import datetime

from ninja import Field, Query, Router, Schema

from gallery.lineage import image_lineage
from gallery.models import Image
from gallery.views import clean_response, file_response
from studio.api.access import allowed, image_for, visible_projects
from studio.api.problems import Problem

router = Router(tags=["images"])

MAX_PAGE = 100


class ImageOut(Schema):
    id: int
    project_id: int
    job_id: int | None
    created_by: str | None
    width: int
    height: int
    prompt: str
    negative_prompt: str
    seed: int
    parameters: str = Field(..., description="A1111 infotext, as embedded in the PNG.")
    visibility: str
    moderation_status: str
    review_status: str
    created_at: datetime
    file_url: str = Field(..., description="The PNG with its parameters embedded.")
    clean_file_url: str = Field(..., description="The pixels alone, no metadata.")


class LineageNodeOut(Schema):
    relation: str = Field(..., description="source, remix, control or image prompt.")
    state: str = Field(..., description="image, hidden (not visible to you), deleted, upload.")
    image_id: int | None


class ImageDetailOut(ImageOut):
    model: str | None
    sampler: str
    steps: int | None
    guidance_scale: float | None
    parents: list[LineageNodeOut]
    children: list[int]
    children_hidden: int


class ImagePageOut(Schema):
    items: list[ImageOut]
    next_cursor: str | None


class ImageFilters(Schema):
    project: int | None = None
    job: int | None = None
    mine: bool = False
    cursor: str | None = None
    limit: int = Field(50, ge=1, le=MAX_PAGE)


def image_out(image):
    return {
        "id": image.pk,
        "project_id": image.project_id,
        "job_id": image.job_id,
        "created_by": image.created_by.get_username() if image.created_by else None,
        "width": image.width,
        "height": image.height,
        "prompt": image.prompt,
        "negative_prompt": image.negative_prompt,
        "seed": image.seed,
        "parameters": image.parameters,
        "visibility": image.visibility,
        "moderation_status": image.moderation_status,
        "review_status": image.review_status,
        "created_at": image.created_at,
        "file_url": f"/api/v1/images/{image.pk}/file",
        "clean_file_url": f"/api/v1/images/{image.pk}/file?metadata=false",
    }


@router.get("/images", response=ImagePageOut, summary="Images the caller may see, newest first")
def images_list(request, filters: Query[ImageFilters]):
    images = Image.objects.filter(project__in=visible_projects(request).values("pk"))
    if filters.project is not None:
        images = images.filter(project_id=filters.project)
    if filters.job is not None:
        images = images.filter(job_id=filters.job)
    if filters.mine:
        images = images.filter(created_by=request.user)
    if filters.cursor is not None:
        if not filters.cursor.isdecimal() or len(filters.cursor) > 18:
            raise Problem(
                422, "cursor: use the `next_cursor` of the previous page.",
                errors=[{"field": "cursor", "message": "Not a cursor this API gave."}],
            )
        images = images.filter(pk__lt=int(filters.cursor))
    page = list(images.select_related("created_by").order_by("-pk")[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {
        "items": [image_out(image) for image in page],
        "next_cursor": str(page[-1].pk) if more else None,
    }


@router.get("/images/{image_id}", response=ImageDetailOut, summary="An image, its recipe, lineage")
def image_get(request, image_id: int):
    image = image_for(request, image_id)
    lineage = image_lineage(user=request.user, image=image)
    # Lineage is drawn for the user; a token sees only what it may, the rest as hidden.
    parents = []
    for node in lineage.parents:
        shown = node.image is not None and allowed(request, "view", node.image.project)
        parents.append({
            "relation": node.kind,
            "state": node.state if shown or node.state != "image" else "hidden",
            "image_id": node.image.pk if shown else None,
        })
    children = [child for child in lineage.children() if allowed(request, "view", child.project)]
    job = image.job
    return {
        **image_out(image),
        "model": job.model.name if job else None,
        "sampler": image.sampler_label(),
        "steps": job.steps if job else None,
        "guidance_scale": job.guidance_scale if job else None,
        "parents": parents,
        "children": [child.pk for child in children],
        "children_hidden": lineage.children_hidden + len(lineage.children()) - len(children),
    }


@router.get(
    "/images/{image_id}/file",
    response={200: None},
    summary="The PNG: with its parameters embedded, or `metadata=false` for the pixels alone",
    openapi_extra={"responses": {200: {"content": {"image/png": {}}}}},
)
def image_file(request, image_id: int, metadata: bool = True, download: bool = False):
    image = image_for(request, image_id)
    if not metadata:
        return clean_response(image)
    return file_response(image, download=download)

