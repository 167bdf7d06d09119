"""The studio form of a remix: a gallery image's parameters, as far as the remixer may use
them in the project they remix into.

Whoever may see an image (Image.may_view: its team, or anyone once it is public) may remix
it. What they get is what the image's detail page and infotext already show (prompt,
negative prompt, size, seed, steps, CFG, sampler, clip skip, strengths, hires fix,
outpaint sides, variation seed, ControlNet and IP-Adapter settings, LoRAs): never the
job's uploads or mask, and its gallery images (source, control, image prompt) only where
the remixer could pick them anyway (their own teams' images). Models and LoRAs that the
remixer's team doesn't have are named in the notice, and the form keeps their defaults.

Unlisted images are not remixable by outsiders: their secret link shows the image, it
doesn't hand its parameters to a studio; their project can make them public for that.
"""

from gallery.models import Image
from generation.loras.models import Lora
from generation.models import DiffusionModel, ModelKind
from studio.permissions import can

# The job parameters that name a gallery image (its source, ControlNet and image prompt).
GALLERY_IMAGE_FIELDS = ("source_image", "control_image", "ip_adapter_image")


def usable_gallery_images(user, ids):
    """The pks among `ids` of live images `user` may use in a form (GenerationForm's rule)."""
    images = Image.objects.filter(pk__in=ids).select_related("project__team")
    return {image.pk for image in images if can(user, "view", image)}


def remix_parameters(*, user, image, project, default_model):
    """(initial form values, the notice saying what was filled and what was not) for
    remixing `image` in `project`."""
    job = image.job
    initial = job.parameters()
    not_applied = []

    # Gallery images the remixer can't pick (another team's, or deleted) stay out.
    used = [initial[field] for field in GALLERY_IMAGE_FIELDS if initial.get(field)]
    usable = usable_gallery_images(user, used) if used else set()
    for field in GALLERY_IMAGE_FIELDS:
        if initial.get(field) and initial[field] not in usable:
            initial[field] = None
            not_applied.append(f"{LEFT_OUT_IMAGES[field]} (not one of your team's images)")

    team = project.team
    available = DiffusionModel.objects.available_to(user, project)
    if not available.filter(pk=job.model_id).exists():
        kept = default_model.name if default_model else "none"
        not_applied.append(
            f"The model {job.model.name} isn't in {team.name}'s library; kept {kept}."
        )
        initial["model"] = default_model.pk if default_model else None
    for field, image_field, kind, label in (
        ("control_model", "control_image", ModelKind.CONTROLNET, "ControlNet"),
        ("ip_adapter_model", "ip_adapter_image", ModelKind.IP_ADAPTER, "IP-Adapter"),
    ):
        model = getattr(job, field)
        if model is None:
            continue
        if not DiffusionModel.objects.available_to(user, project, kind=kind).filter(
            pk=model.pk
        ).exists():
            not_applied.append(f"The {label} {model.name} isn't in {team.name}'s library.")
            initial[field] = initial[image_field] = None

    initial["loras"], missing = team_loras(job, team)
    not_applied.extend(missing)
    initial.update(seed=image.seed, batch_size=1, remix_of=image.pk)
    notice = {
        "level": "warning" if not_applied else "success",
        "title": f"Remix of image {image.pk}",
        "text": "Filled with its prompt and parameters: change anything, then generate.",
        "not_applied": not_applied,
    }
    return initial, notice


LEFT_OUT_IMAGES = {
    "source_image": "Its source image",
    "control_image": "Its ControlNet image",
    "ip_adapter_image": "Its image prompt",
}


def team_loras(job, team):
    """The job's picked LoRAs as the team's library has them (the same file: same hash),
    and a line for each LoRA it lacks, picked or written in the prompt."""
    used = list(job.job_loras.all())
    library = Lora.objects.filter(team=team)
    by_hash = {lora.sha256: lora for lora in library.filter(sha256__in=[u.sha256 for u in used])}
    names = {name.lower() for name in library.values_list("name", flat=True)} if any(
        u.in_prompt for u in used
    ) else set()
    picked, missing = [], []
    for use in used:
        if use.in_prompt:
            if use.name.lower() not in names:
                missing.append(
                    f"The LoRA {use.name} (in the prompt) isn't in {team.name}'s library: "
                    "take its tag out of the prompt or upload it."
                )
        elif use.sha256 in by_hash:
            picked.append({"id": by_hash[use.sha256].pk, "weight": use.weight})
        else:
            missing.append(f"The LoRA {use.name} isn't in {team.name}'s library; left out.")
    return picked, missing
