"""Forms of the LoRA library (search, upload, edit) and the generate form's LoRA stack."""

from django import forms
from django.core.exceptions import ValidationError

from generation.loras.models import Lora
from generation.loras.services import (
    LoraStackError,
    check_lora_upload,
    clean_lora_name,
    lora_stack,
    name_taken,
)
from generation.loras.syntax import MAX_WEIGHT, MIN_WEIGHT
from generation.models import ModelFamily

WEIGHT_HELP = f"{MIN_WEIGHT:g} to {MAX_WEIGHT:g}; 1 is full strength, negative inverts it."


class LoraSearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": "Search names, descriptions, trigger words…",
                "autocomplete": "off",
            }
        ),
    )
    family = forms.ChoiceField(
        required=False, choices=[("", "All families"), *ModelFamily.choices]
    )

    def filters(self):
        if not self.is_valid():
            return {"text": (self.data.get("q") or "").strip()[:100]}
        return {"text": self.cleaned_data["q"].strip(), "family": self.cleaned_data["family"]}


def weight_field(**kwargs):
    return forms.FloatField(
        min_value=MIN_WEIGHT,
        max_value=MAX_WEIGHT,
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        **kwargs,
    )


class LoraDetailsMixin:
    """Name and trigger-word cleaning shared by upload and edit."""

    team = None
    instance_for_name = None

    def clean_name(self):
        name = self.cleaned_data["name"]
        if not name.strip():
            return ""
        name = clean_lora_name(name)
        if name_taken(self.team, name, exclude=self.instance_for_name):
            raise ValidationError(
                f"A LoRA named “{name}” is already in {self.team.name}'s library: choose "
                "another name."
            )
        return name

    def clean_trigger_words(self):
        words = self.cleaned_data["trigger_words"]
        if words is None:
            return None
        return ", ".join(word.strip() for word in words.split(",") if word.strip())


class LoraUploadForm(LoraDetailsMixin, forms.Form):
    file = forms.FileField(
        label="LoRA file",
        widget=forms.ClearableFileInput(attrs={"accept": ".safetensors"}),
        help_text="A .safetensors file (kohya or diffusers). Pickles (.ckpt, .pt, .bin) are "
        "refused.",
        error_messages={"required": "Choose the LoRA's .safetensors file."},
    )
    name = forms.CharField(
        required=False,
        max_length=100,
        help_text="Empty: from the file. The prompt calls it &lt;lora:name:weight&gt;.",
    )
    family = forms.ChoiceField(
        label="Base family",
        required=False,
        choices=[("", "Detect from the file"), *ModelFamily.choices],
        help_text="The model family it was trained for; detected from the file when it says.",
    )
    default_weight = weight_field(initial=1.0, help_text=WEIGHT_HELP)
    trigger_words = forms.CharField(
        required=False,
        max_length=500,
        help_text="Comma-separated. Empty: the most frequent training tags, if the file has "
        "them.",
    )
    description = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.checked = None

    def clean_trigger_words(self):
        words = super().clean_trigger_words()
        return words or None  # empty: from the file's metadata

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is None:
            return cleaned
        try:
            self.checked = check_lora_upload(team=self.team, upload=upload)
        except ValidationError as error:
            self.add_error("file", error)
            return cleaned
        info = self.checked.info
        family = cleaned.get("family")
        if not family and not info.family:
            self.add_error(
                "family",
                "The file does not say which base model it was made for: choose its family "
                "(and the file again).",
            )
        elif family and info.family_is_certain and family != info.family:
            self.add_error(
                "family",
                f"This LoRA is made for {ModelFamily(info.family).label} "
                f"({info.family_evidence}), not {ModelFamily(family).label}.",
            )
        return cleaned


class LoraEditForm(LoraDetailsMixin, forms.ModelForm):
    default_weight = weight_field(help_text=WEIGHT_HELP)

    class Meta:
        model = Lora
        fields = ["name", "description", "trigger_words", "default_weight"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = self.instance.team
        self.instance_for_name = self.instance
        self.fields["name"].help_text = "The prompt calls it &lt;lora:name:weight&gt;."

    def clean_name(self):
        name = super().clean_name()
        if not name:
            raise ValidationError("Give the LoRA a name: the prompt calls it <lora:name:weight>.")
        return name

    def validate_constraints(self, exclude=None):
        pass  # clean_name says it better; the database constraint stays the backstop


# -- The generate form's LoRA stack -------------------------------------------------------


class ModelSelect(forms.Select):
    """The generate form's model menu: each option carries its family (data-family), so
    the LoRA picker offers only LoRAs made for the chosen model."""

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-family"] = instance.family
        return option


class LoraStackWidget(forms.Widget):
    """Rows posted as parallel lists: `lora` (library ids) and `lora_weight`."""

    def value_from_datadict(self, data, files, name):
        ids = _list(data, "lora")
        weights = _list(data, "lora_weight")
        weights = weights[: len(ids)] + [""] * (len(ids) - len(weights))
        return [(str(lora_id), str(weight)) for lora_id, weight in zip(ids, weights, strict=True)]

    def value_omitted_from_data(self, data, files, name):
        return "lora" not in data


def _list(data, key):
    if hasattr(data, "getlist"):
        return data.getlist(key)
    value = data.get(key, [])
    return list(value) if isinstance(value, (list, tuple)) else [value]


class LoraStackField(forms.Field):
    """[(lora id, weight or None)] as posted; the form turns them into LoraChoice items
    once it knows the team and the model (clean_lora_stack)."""

    widget = LoraStackWidget

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "LoRAs")
        super().__init__(**kwargs)

    def to_python(self, value):
        picked = []
        for lora_id, weight in value or []:
            lora_id, weight = lora_id.strip(), weight.strip()
            if not lora_id:
                continue
            if not lora_id.isdecimal() or len(lora_id) > 18:
                raise ValidationError("Unknown LoRA: pick one from the list.")
            if weight:
                try:
                    weight = float(weight)
                except ValueError:
                    raise ValidationError(
                        f"“{weight[:20]}” is not a LoRA weight: use a number from "
                        f"{MIN_WEIGHT:g} to {MAX_WEIGHT:g}."
                    ) from None
            picked.append((int(lora_id), weight if weight != "" else None))
        return picked


def clean_lora_stack(form, cleaned, team):
    """Turn the picked LoRAs and the prompt's <lora:…> tags into the job's stack
    (cleaned["loras"], LoraChoice items); a problem becomes an error on its field."""
    picked = cleaned.get("loras") or []
    if team is None:  # a form only checked, not submitted: nothing to resolve against
        cleaned["loras"] = []
        return
    prompt, model = cleaned.get("prompt"), cleaned.get("model")
    if prompt is None or "loras" not in cleaned:
        return  # their own errors are shown
    try:
        cleaned["loras"] = lora_stack(team=team, model=model, picked=picked, prompt=prompt)
    except LoraStackError as error:
        form.add_error(error.field, str(error))
