"""Forms of the model library: search, add/edit (site staff), a team's own settings."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from generation.forms import MAX_SIDE, MIN_SIDE
from generation.library.hashes import model_hash_schedule
from generation.library.sources import (
    flux_transformer,
    validate_config_source,
    validate_source,
)
from generation.models import (
    SAMPLER_CHOICES,
    DiffusionModel,
    FluxTransformer,
    ModelFamily,
    ModelKind,
    SourceKind,
    TeamModelSetting,
)
from studio.accounts.models import Role

# Families whose single files the workers load as a transformer, the rest from the config.
TRANSFORMER_FILE_FAMILIES = (ModelFamily.FLUX1, ModelFamily.SD3)

# Viewers never generate, so a model's minimum role starts at Editor.
MIN_ROLE_CHOICES = [(role.value, role.label) for role in (Role.EDITOR, Role.ADMIN, Role.OWNER)]


class LibrarySearchForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Search by name…", "autocomplete": "off"}
        ),
    )
    family = forms.ChoiceField(
        required=False, choices=[("", "All families"), *ModelFamily.choices]
    )
    kind = forms.ChoiceField(required=False, choices=[("", "All kinds"), *ModelKind.choices])

    def filters(self):
        """Search and filters from valid input; an invalid choice filters nothing."""
        if not self.is_valid():
            return {"text": (self.data.get("q") or "").strip()[:100]}
        data = self.cleaned_data
        return {"text": data["q"].strip(), "family": data["family"], "kind": data["kind"]}


class DiffusionModelForm(forms.ModelForm):
    min_role = forms.ChoiceField(
        label="Minimum role",
        choices=MIN_ROLE_CHOICES,
        initial=Role.EDITOR,
        help_text="The least team role that may generate with it. Each team can set its own.",
    )
    default_width = forms.IntegerField(
        label="Width", min_value=MIN_SIDE, max_value=MAX_SIDE, initial=512,
        widget=forms.NumberInput(attrs={"step": "8"}),
    )
    default_height = forms.IntegerField(
        label="Height", min_value=MIN_SIDE, max_value=MAX_SIDE, initial=512,
        widget=forms.NumberInput(attrs={"step": "8"}),
    )
    default_steps = forms.IntegerField(
        label="Steps", min_value=1, max_value=settings.STUDIO_MAX_STEPS, initial=25
    )
    default_guidance_scale = forms.FloatField(
        label="CFG scale", min_value=0, max_value=30, initial=7.0,
        widget=forms.NumberInput(attrs={"step": "0.5"}),
    )
    default_sampler = forms.ChoiceField(
        label="Sampler",
        required=False,
        choices=[("", "The model's own scheduler"), *SAMPLER_CHOICES],
    )

    class Meta:
        model = DiffusionModel
        fields = [
            "name",
            "kind",
            "family",
            "source_kind",
            "source",
            "config_source",
            "description",
            "default_width",
            "default_height",
            "default_steps",
            "default_guidance_scale",
            "default_sampler",
            "min_role",
            "is_enabled",
        ]
        widgets = {
            "name": forms.TextInput(attrs={"placeholder": "e.g. SD 1.5", "autofocus": True}),
            "source": forms.TextInput(
                attrs={
                    "placeholder": "runwayml/stable-diffusion-v1-5 or /models/my-model",
                    "class": "mono",
                    "spellcheck": "false",
                    "autocomplete": "off",
                }
            ),
            "config_source": forms.TextInput(
                attrs={"placeholder": "Optional", "class": "mono", "spellcheck": "false"}
            ),
            "description": forms.TextInput(
                attrs={"placeholder": "What is it good at? Where does it come from?"}
            ),
        }
        help_texts = {
            "source_kind": "Hub ids are downloaded by the workers on first use; local paths "
            "must exist here, as the workers see them. Single files must be .safetensors: "
            "pickled .ckpt/.pt/.bin files are refused.",
            "config_source": "Single-file checkpoints only: a diffusers folder or Hub id of "
            "the same architecture whose configs describe it. Needed when workers are "
            "offline; empty uses the standard configs.",
            "is_enabled": "Off hides it from every team.",
        }
        labels = {"kind": "Kind", "family": "Family"}

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise ValidationError("Give the model a name.")
        return name

    def _pick_error_field(self, error):
        return "family" if getattr(error, "code", None) == "family" else "source"

    def clean(self):
        cleaned = super().clean()
        source, source_kind = cleaned.get("source"), cleaned.get("source_kind")
        kind, family = cleaned.get("kind"), cleaned.get("family")
        if source and source_kind and kind:
            try:
                cleaned["source"] = validate_source(
                    source, source_kind=source_kind, kind=kind, family=family
                )
            except ValidationError as error:
                self.add_error(self._pick_error_field(error), error)
            else:
                self._refuse_duplicate_source(cleaned["source"], kind)
        config_source = (cleaned.get("config_source") or "").strip()
        is_checkpoint_file = source_kind == SourceKind.FILE and kind == ModelKind.CHECKPOINT
        if not config_source and is_checkpoint_file and family in TRANSFORMER_FILE_FAMILIES:
            label = ModelFamily(family).label
            self.add_error(
                "config_source",
                f"A single {label} file holds the transformer only (as these models are "
                f"shared): set a {label} diffusers folder or Hub id whose text encoders and "
                "VAE it runs with.",
            )
        if config_source:
            if source_kind != SourceKind.FILE or kind != ModelKind.CHECKPOINT:
                self.add_error(
                    "config_source",
                    "Only single-file checkpoints take a diffusers config; leave it empty.",
                )
            else:
                try:
                    cleaned["config_source"] = validate_config_source(config_source)
                except ValidationError as error:
                    self.add_error("config_source", error)
        for side in ("default_width", "default_height"):
            value = cleaned.get(side)
            if value and value % 8:
                lower = value - value % 8
                self.add_error(
                    side,
                    f"{self.fields[side].label} must be a multiple of 8 (try {lower} or "
                    f"{lower + 8}).",
                )
        return cleaned

    def save(self, commit=True):
        """The model, its A1111 hash cleared when its source changes and computed again
        (generation.library.hashes), and whether it is a FLUX.1 Fill, Depth or Canny model
        read from its source (a FluxTransformer)."""
        model = super().save(commit=False)
        if {"source", "source_kind"} & set(self.changed_data):
            model.sha256 = ""
        model.flux_transformer = (
            flux_transformer(model.source, source_kind=model.source_kind)
            if model.kind == ModelKind.CHECKPOINT
            else FluxTransformer.STANDARD
        )
        if commit:
            model.save()
            model_hash_schedule(model=model)
        return model

    def _refuse_duplicate_source(self, source, kind):
        duplicate = DiffusionModel.objects.filter(source=source, kind=kind)
        if self.instance.pk:
            duplicate = duplicate.exclude(pk=self.instance.pk)
        existing = duplicate.first()
        if existing is not None:
            self.add_error(
                "source", f"{source} is already in the library as “{existing.name}”."
            )


class TeamModelSettingForm(forms.ModelForm):
    min_role = forms.ChoiceField(label="Minimum role", required=False)

    class Meta:
        model = TeamModelSetting
        fields = ["is_enabled", "min_role"]
        labels = {"is_enabled": "Enabled for this team"}

    def __init__(self, *args, model, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["min_role"].choices = [
            ("", f"Library default ({model.get_min_role_display()})"),
            *MIN_ROLE_CHOICES,
        ]
