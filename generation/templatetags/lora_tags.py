"""The generate form's LoRA picker: `{% lora_picker form project %}`."""

from django import template

from generation.loras.models import Lora
from generation.loras.services import LoraChoice

register = template.Library()


def _chosen(form):
    """[(lora id, weight text)] the picker shows: as posted, or the form's initial value
    (dicts from a job's parameters, or LoraChoice items; prompt tags stay in the prompt)."""
    if form.is_bound:
        return [(lora_id, weight) for lora_id, weight in form["loras"].value() or []]
    chosen = []
    for item in form.get_initial_for_field(form.fields["loras"], "loras") or []:
        if isinstance(item, LoraChoice):
            if not item.in_prompt:
                chosen.append((str(item.lora.pk), f"{item.weight:g}"))
        elif isinstance(item, dict) and item.get("id"):
            weight = item.get("weight")
            chosen.append((str(item["id"]), "" if weight is None else f"{weight:g}"))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            chosen.append((str(item[0]), "" if item[1] is None else f"{item[1]:g}"))
    return chosen


@register.inclusion_tag("generation/includes/lora_picker.html")
def lora_picker(form, project):
    team = project.team
    options = list(Lora.objects.for_team(team).enabled().order_by("name"))
    by_id = {str(lora.pk): lora for lora in options}
    rows = []
    for lora_id, weight in _chosen(form):
        lora = by_id.get(str(lora_id))
        if lora is not None:
            rows.append({"lora": lora, "weight": weight or f"{lora.default_weight:g}"})
    return {
        "team": team,
        "rows": rows,
        "options": options,
        "errors": form["loras"].errors,
        "field_id": form["loras"].auto_id,
    }
