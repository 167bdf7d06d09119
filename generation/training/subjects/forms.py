"""Forms of the subject library (subject, images, crop, caption, consent) and of a
training run (preset, parameters, estimate)."""

from django import forms
from django.utils import timezone

from generation.choices import ModelFamily
from generation.training.models import PRESET_CHOICES
from generation.training.subjects.models import MAX_SUBJECT_IMAGES, Subject, SubjectConsent
from gpu_workers import training_plan
from studio.accounts.models import Project

ACCEPT_IMAGES = "image/png,image/jpeg,image/webp"
# Families whose text encoders training leaves alone (gpu_workers.training refuses them too).
FROZEN_TEXT_ENCODER_FAMILIES = {"sdxl": "SDXL", "flux1": "FLUX.1", "sd3": "SD 3.x"}


class SubjectForm(forms.ModelForm):
    class Meta:
        model = Subject
        fields = ["name", "class_word", "token", "depicts_person", "description"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "token": forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        }

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team

    def clean_token(self):
        token = self.cleaned_data["token"].lower()
        taken = Subject.objects.filter(team=self.team, token__iexact=token)
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(
                f"“{token}” already stands for another of {self.team.name}'s subjects: choose "
                "another rare word."
            )
        return token

    def validate_constraints(self, exclude=None):
        pass  # clean_token says it better; the database constraint stays the backstop


class MultipleImageInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one field (Django's documented recipe): a list of uploads."""

    def clean(self, data, initial=None):
        files = [item for item in (data if isinstance(data, (list, tuple)) else [data]) if item]
        if not files:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return [super(MultipleImageField, self).clean(item, initial) for item in files]


class SubjectImagesForm(forms.Form):
    images = MultipleImageField(
        widget=MultipleImageInput(attrs={"accept": ACCEPT_IMAGES, "multiple": True}),
        help_text=f"PNG, JPEG or WebP, up to {MAX_SUBJECT_IMAGES} in all. Several angles, "
        "lights and backgrounds; the subject clearly visible. Stored without their metadata.",
        error_messages={"required": "Choose at least one image."},
    )


class CropForm(forms.Form):
    """A square placed by hand, in the image's pixels; `reset` goes back to the centre."""

    x = forms.IntegerField(min_value=0, required=False)
    y = forms.IntegerField(min_value=0, required=False)
    size = forms.IntegerField(min_value=1, required=False)
    reset = forms.BooleanField(required=False)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("reset") or self.errors:
            return cleaned
        missing = [name for name in ("x", "y", "size") if cleaned.get(name) is None]
        for name in missing:
            self.add_error(name, f"Give the crop's {name}, or reset it to the centre.")
        return cleaned


class CaptionForm(forms.Form):
    caption = forms.CharField(max_length=300, required=False)


class ConsentForm(forms.ModelForm):
    class Meta:
        model = SubjectConsent
        fields = ["given_by", "given_on", "scope"]
        widgets = {
            "given_on": forms.DateInput(attrs={"type": "date"}),
            "scope": forms.Textarea(attrs={"rows": 3}),
        }

    def clean_given_on(self):
        given_on = self.cleaned_data["given_on"]
        if given_on > timezone.localdate():
            raise forms.ValidationError("Consent can't be dated in the future.")
        return given_on


class RevokeConsentForm(forms.Form):
    reason = forms.CharField(
        max_length=300,
        required=False,
        help_text="Optional, kept with the record (e.g. “asked by email on 3 March”).",
    )


class TrainingForm(forms.Form):
    """A run's parameters. A preset fills them in the browser; the posted values are what
    runs, so a tweak makes it a custom run."""

    project = forms.ModelChoiceField(
        queryset=None, empty_label=None,
        help_text="Its members see the run; the LoRA joins the team's library.",
        error_messages={"invalid_choice": "Choose a project you generate in."},
    )
    preset = forms.ChoiceField(
        choices=PRESET_CHOICES, initial="balanced", widget=forms.RadioSelect
    )
    model = forms.ModelChoiceField(
        queryset=None, label="Base model", empty_label=None,
        error_messages={"invalid_choice": "Choose a base model from the list."},
    )
    steps = forms.IntegerField(min_value=1, max_value=training_plan.MAX_STEPS)
    learning_rate = forms.FloatField(
        min_value=training_plan.MIN_LEARNING_RATE, max_value=training_plan.MAX_LEARNING_RATE,
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="1e-4 suits most subjects; lower it if samples burn in.",
    )
    rank = forms.IntegerField(
        min_value=1, max_value=training_plan.MAX_RANK,
        help_text="Higher learns more detail and makes a larger file.",
    )
    resolution = forms.IntegerField(
        min_value=training_plan.MIN_RESOLUTION, max_value=training_plan.MAX_RESOLUTION,
        help_text="Square crops are resized to this; a multiple of 64, usually the model's "
        "native size.",
    )
    batch_size = forms.IntegerField(min_value=1, max_value=training_plan.MAX_BATCH_SIZE)
    seed = forms.IntegerField(
        min_value=0, max_value=2**32 - 1, required=False,
        help_text="Empty: a random seed (recorded).",
    )
    train_text_encoder = forms.BooleanField(
        required=False, label="Train the text encoder too",
        help_text="Learns the token's meaning better; more memory.",
    )
    prior_preservation = forms.BooleanField(
        required=False, label="Prior preservation",
        help_text="Also trains on generated images of the class, so the model still knows "
        "other dogs, people, etc.",
    )
    class_images = forms.IntegerField(
        min_value=1, max_value=200, initial=50, label="Class images", required=False,
        help_text="Generated by the worker before training (prior preservation only).",
    )
    fp8_base = forms.BooleanField(
        required=False, label="FP8 base weights",
        help_text="FLUX.1 and SD 3.x: the frozen transformer is stored in fp8, half its bf16 "
        "memory (FLUX.1 fits a 24 GB GPU), at a small cost in precision.",
    )
    sample_prompt = forms.CharField(
        max_length=500, required=False,
        help_text="Sampled with a fixed seed as training goes. Empty: the subject's prompt.",
    )
    sample_every = forms.IntegerField(
        min_value=0, max_value=training_plan.MAX_STEPS, initial=100,
        label="Sample every", help_text="Steps between samples (0: only at the end).",
    )

    def __init__(self, *args, projects, models, subject, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = Project.objects.filter(
            pk__in=[project.pk for project in projects]
        )
        self.fields["model"].queryset = models
        self.subject = subject
        self.fields["sample_prompt"].widget.attrs["placeholder"] = subject.instance_prompt()
        if not self.is_bound:
            first = models.first()
            preset = training_plan.presets_for(first.family if first else None)["balanced"]
            self.initial.update({name: preset[name] for name in training_plan.PRESET_FIELDS})
            self.initial["resolution"] = first.default_width if first else 512
            self.initial["class_images"] = self.fields["class_images"].initial
            self.initial["sample_every"] = self.fields["sample_every"].initial

    def clean(self):
        cleaned = super().clean()
        model = cleaned.get("model")
        frozen = FROZEN_TEXT_ENCODER_FAMILIES.get(model.family) if model is not None else None
        if cleaned.get("train_text_encoder") and frozen:
            self.add_error(
                "train_text_encoder",
                f"Training {frozen}'s text encoders is not supported: untick this for "
                f"{frozen} models.",
            )
        family = model.family if model is not None else None
        preset = cleaned.get("preset")
        if preset in training_plan.PRESET_LABELS and preset not in training_plan.presets_for(
            family
        ):
            self.add_error(
                "preset",
                f"The “{training_plan.PRESET_LABELS[preset]}” preset is for "
                f"{self._families_with_preset(preset)} models: choose another preset for "
                f"{model.name}.",
            )
        if cleaned.get("fp8_base") and family not in training_plan.FP8_BASE_FAMILIES:
            self.add_error(
                "fp8_base",
                "FP8 base weights are for FLUX.1 and SD 3.x models: untick this for "
                f"{model.name}.",
            )
        if cleaned.get("prior_preservation") and cleaned.get("class_images") is None:
            if "class_images" not in self.errors:
                self.add_error(
                    "class_images", "Prior preservation needs a number of class images."
                )
        return cleaned

    @staticmethod
    def _families_with_preset(preset):
        return " and ".join(
            family.label for family in ModelFamily
            if preset in training_plan.presets_for(family.value)
        )

    def clean_resolution(self):
        resolution = self.cleaned_data["resolution"]
        if resolution % 64:
            raise forms.ValidationError(
                f"{resolution} is not a multiple of 64: use e.g. {resolution // 64 * 64 or 64}."
            )
        return resolution
