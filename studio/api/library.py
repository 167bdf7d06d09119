"""Teams, projects and the libraries a job draws on: models, LoRAs, embeddings."""

from datetime import datetime

from ninja import Field, Router, Schema

from generation.choices import FLOW_SAMPLER_NAMES, ModelFamily
from generation.models import DiffusionModel, Embedding, Lora, ModelKind
from studio.api.access import project_for, team_for, visible_projects, visible_teams

router = Router(tags=["library"])


class TeamOut(Schema):
    id: int
    name: str
    role: str


class ProjectOut(Schema):
    id: int
    team_id: int
    name: str
    description: str
    created_at: datetime


class ModelOut(Schema):
    id: int
    name: str
    kind: str
    family: ModelFamily = Field(
        ..., description="flux1 (FLUX.1) and sd3 (SD 3.x) are flow-matching models: they take "
                         "a job's `shift`, run the flow samplers "
                         f"({', '.join(FLOW_SAMPLER_NAMES)}) and read their prompt with T5; "
                         "FLUX.1's guidance scale is its distilled guidance (no CFG, no "
                         "negative prompt).",
    )
    description: str
    default_width: int
    default_height: int
    default_steps: int
    default_guidance_scale: float = Field(..., description="FLUX.1: its distilled guidance.")
    default_sampler: str
    hash: str | None


class LoraOut(Schema):
    id: int
    name: str
    family: str
    description: str
    trigger_words: list[str]
    default_weight: float
    prompt_tag: str
    sha256: str
    size_bytes: int
    enabled: bool


class EmbeddingOut(Schema):
    id: int
    name: str
    family: str
    vectors: int
    sha256: str


@router.get("/teams", response=list[TeamOut], summary="Teams the caller belongs to")
def teams_list(request):
    teams = visible_teams(request).distinct()
    return [{"id": team.pk, "name": team.name, "role": team.role_of(request.user)}
            for team in teams]


@router.get("/projects", response=list[ProjectOut], summary="Projects the caller may see")
def projects_list(request):
    return visible_projects(request).distinct()


@router.get("/projects/{project_id}", response=ProjectOut)
def project_get(request, project_id: int):
    return project_for(request, project_id, "view")


@router.get(
    "/projects/{project_id}/models",
    response=list[ModelOut],
    summary="Models the caller may use in a project",
    description="Checkpoints by default; `kind=controlnet` or `kind=ip_adapter` for those.",
)
def models_list(request, project_id: int, kind: ModelKind = ModelKind.CHECKPOINT):
    project = project_for(request, project_id, "view")
    models = DiffusionModel.objects.available_to(request.user, project, kind=kind)
    if kind == ModelKind.CONTROLNET:
        # ControlNets have no minimum role of their own: as the generate form offers them.
        models = DiffusionModel.objects.usable().filter(kind=kind).exclude(
            team_settings__team=project.team, team_settings__is_enabled=False
        )
    return [model_out(model) for model in models.order_by("name")]


def model_out(model):
    return {
        "id": model.pk,
        "name": model.name,
        "kind": model.kind,
        "family": model.family,
        "description": model.description,
        "default_width": model.default_width,
        "default_height": model.default_height,
        "default_steps": model.default_steps,
        "default_guidance_scale": model.default_guidance_scale,
        "default_sampler": model.default_sampler,
        "hash": model.a1111_hash(),
    }


@router.get("/teams/{team_id}/loras", response=list[LoraOut], summary="A team's LoRA library")
def loras_list(request, team_id: int, q: str = "", family: str = ""):
    team = team_for(request, team_id, "view")
    loras = Lora.objects.for_team(team).search(text=q[:100], family=family).order_by("name")
    return [
        {
            "id": lora.pk,
            "name": lora.name,
            "family": lora.family,
            "description": lora.description,
            "trigger_words": lora.trigger_word_list(),
            "default_weight": lora.default_weight,
            "prompt_tag": lora.prompt_tag(),
            "sha256": lora.sha256,
            "size_bytes": lora.size_bytes,
            "enabled": not lora.disabled_reason,
        }
        for lora in loras
    ]


@router.get(
    "/teams/{team_id}/embeddings", response=list[EmbeddingOut],
    summary="A team's textual inversion embeddings",
)
def embeddings_list(request, team_id: int):
    team = team_for(request, team_id, "view")
    return Embedding.objects.for_team(team).order_by("name")
