import base64
import binascii
from functools import cached_property

from django import forms
from django.conf import settings
from django.core.files.base import ContentFile
from django.forms.utils import pretty_name
from django.utils.choices import BaseChoiceIterator

from gallery.models import Image
from generation import admission
from generation.choices import (
    FLOW_FAMILIES,
    FLOW_SAMPLER_NAMES,
    FLOW_SIZE_MULTIPLE,
)
from generation.loras.forms import LoraStackField, ModelSelect, clean_lora_stack
from generation.models import (
    SAMPLER_CHOICES,
    DiffusionModel,
    GenerationJob,
    JobMode,
    ModelFamily,
    ModelKind,
)
from generation.recipe import (
    LIMITS,
    MAX_PROMPT,
    OUTPAINT_SIDES,
    controlnet_model_problems,
    flat_mode,
    recipe_problems,
)
from generation.seeds import random_seed
from generation.services import fetched_team_setting, with_team_setting
from generation.styles.applying import styled_prompts, team_styles
from generation.wildcards.expansion import (
    expansion_problems,
    is_dynamic,
    job_prompts,
    team_wildcards,
    template_problems,
)
from gpu_workers.control import DEFAULT_HIGH_THRESHOLD, DEFAULT_LOW_THRESHOLD
from gpu_workers.prompt_syntax import prompt_schedule
from studio.permissions import can
from studio.uploads import PixelBudget, UploadRejected, image_from_upload

MIN_SIDE, MAX_SIDE = LIMITS["width"]
MASK_DATA_PREFIX = "data:image/png;base64,"


class LibraryModelField(forms.ModelChoiceField):
    """The model to generate with, among those the user may use. A library model the user
    may not use is refused with the reason, not as an unknown choice."""

    refusal = None  # model -> why the user may not use it (None: they may); set by the form
    # Set by a posted form, whose queryset is then every library model with this team's
    # setting for it (services.with_team_setting): a model the caller has already read that
    # way is taken as it is, not read again.
    team = None

    def to_python(self, value):
        if self.team is not None and isinstance(value, DiffusionModel) and (
            getattr(value, "team_setting_of", None) == self.team.pk
        ):
            if self.refusal is not None:
                self.refuse(value)
            return value
        try:
            model = super().to_python(value)
        except forms.ValidationError:
            known = None
            if self.refusal is not None and str(value).isdecimal() and len(str(value)) <= 18:
                known = DiffusionModel.objects.filter(pk=value).first()
            if known is not None:
                self.refuse(known)
            raise
        if model is not None and self.refusal is not None:
            self.refuse(model)  # found among more than those the user may use
        return model

    def refuse(self, model):
        """Refuse `model`, saying why, if the user may not use it."""
        reason = self.refusal(model)
        if reason:
            raise forms.ValidationError(
                f"You may not use “{model.name}” in this project: {reason} Choose one "
                "from the list.",
                code="not_allowed",
            ) from None


class StudioModelSelect(ModelSelect):
    """ModelSelect, each option also saying the modes of a model that runs only some
    (data-modes: a FLUX.1 Fill model's inpaint and outpaint), which the studio page shows
    beside the menu (static/js/model_modes.js)."""

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        instance = getattr(value, "instance", None)
        if instance is not None and instance.modes() != list(JobMode):
            option["attrs"]["data-modes"] = modes_text(instance)
        if instance is not None and instance.is_flux_control:  # it follows a control image
            option["attrs"]["data-control-image"] = ""
        return option


def modes_text(model):
    """The modes the model runs in, as words: "inpaint and outpaint"."""
    return " and ".join(JobMode(mode).label.lower() for mode in model.modes())


def bounds(name):
    """A number field's min_value and max_value: the recipe's limits (generation.recipe)."""
    least, most = LIMITS[name]
    return {"min_value": least, "max_value": most}


def outpaint_side(name, label):
    """Pixels outpainting adds on one side of the source."""
    return forms.IntegerField(
        required=False, label=label, initial=0, **bounds(name),
        widget=forms.NumberInput(attrs={"step": "8"}),
    )


class SeedOrRandomField(forms.IntegerField):
    """A seed; -1, as AUTOMATIC1111 users write it, or nothing means a random one."""

    def to_python(self, value):
        value = super().to_python(value)
        return None if value == -1 else value


def range_error_messages(field, name):
    """Plain words naming the field and its range, instead of Django's "Ensure this value
    is less than or equal to 2048." and "Enter a whole number."."""
    label = field.label or pretty_name(name)
    low, high = (f"{limit:g}" if isinstance(limit, float) else str(limit)
                 for limit in (field.min_value, field.max_value))
    kind = "a number" if isinstance(field, forms.FloatField) else "a whole number"
    return {
        "min_value": f"{label} must be from {low} to {high}.",
        "max_value": f"{label} must be from {low} to {high}.",
        "invalid": f"{label} must be {kind} from {low} to {high}.",
        "required": f"{label} is needed: {kind} from {low} to {high}.",
    }


class LazyChoices(BaseChoiceIterator):
    """Choices that `load` returns, called when they are first read (then kept)."""

    def __init__(self, load):
        self.load = load

    @cached_property
    def loaded(self):
        return list(self.load())

    def __iter__(self):
        return iter(self.loaded)

    def __len__(self):
        return len(self.loaded)


class GenerationForm(forms.Form):
    prompt = forms.CharField(
        max_length=MAX_PROMPT,
        widget=forms.Textarea(
            attrs={"rows": 5, "class": "prompt-input", "placeholder": "Describe the image…"}
        ),
        error_messages={"required": "Write a prompt: describe what the image should show."},
    )
    negative_prompt = forms.CharField(
        max_length=MAX_PROMPT,
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 2, "class": "negative-input", "placeholder": "What to avoid…"}
        ),
    )
    # LoRAs picked in the form ("lora" and "lora_weight" rows); <lora:name:weight> tags in
    # the prompt join them when the form is cleaned.
    loras = LoraStackField()
    # The team's styles applied to the prompts, by name, in the order given (A1111's picker).
    styles = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "invalid_choice": "No style of this team is called %(value)s: pick styles from "
                              "the list, or add it in the team's styles.",
        },
    )
    model = LibraryModelField(
        queryset=DiffusionModel.objects.none(),
        empty_label=None,
        # Each option says its family (the LoRA picker follows it) and any modes it is
        # limited to (the page says so).
        widget=StudioModelSelect,
        error_messages={"invalid_choice": "Unknown model: choose one from the list."},
    )
    steps = forms.IntegerField(initial=25, **bounds("steps"))
    guidance_scale = forms.FloatField(
        label="CFG scale", initial=7.0, **bounds("guidance_scale"),
        widget=forms.NumberInput(attrs={"step": "0.5"}),
    )
    width = forms.IntegerField(
        initial=512, **bounds("width"),
        widget=forms.NumberInput(attrs={"step": "8"}),
    )
    height = forms.IntegerField(
        initial=512, **bounds("height"),
        widget=forms.NumberInput(attrs={"step": "8"}),
    )
    sampler = forms.ChoiceField(
        choices=[("", "Model default"), *SAMPLER_CHOICES],
        required=False,
        error_messages={
            "invalid_choice": "Unknown sampler %(value)s: choose one from the list "
            f"({', '.join(name for name, _ in SAMPLER_CHOICES)})."
        },
    )
    shift = forms.FloatField(
        required=False, **bounds("shift"),
        widget=forms.NumberInput(attrs={"step": "0.01", "placeholder": "Model default"}),
        help_text="FLUX.1 and SD 3.x only: the flow-matching shift (ComfyUI's, Forge's "
                  "Shift); higher spends more steps on composition. Empty: the model's.",
    )
    clip_skip = forms.IntegerField(
        required=False,
        initial=1, **bounds("clip_skip"),
        help_text="1 uses the text encoder's last layer; 2 suits many anime-style models.",
    )
    batch_size = forms.IntegerField(
        required=False,
        initial=1, **bounds("batch_size"),
        help_text="Images made together in one job.",
    )
    batch_count = forms.IntegerField(
        required=False,
        min_value=1, max_value=settings.STUDIO_MAX_BATCH_COUNT, initial=1,
        help_text="Jobs queued one after another; seeds follow on.",
    )
    source_image = forms.IntegerField(required=False, widget=forms.HiddenInput)
    source_upload = forms.FileField(
        required=False,
        label="Source image",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
        help_text="img2img: PNG, JPEG or WebP; it is resized to the chosen size.",
    )
    strength = forms.FloatField(
        required=False,
        label="Denoising strength",
        initial=0.75,
        **bounds("strength"),
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        help_text="How much of the source to redraw: low keeps it, 1 replaces it.",
    )
    # The painted mask, as the painter sends it: a PNG data URL.
    mask_data = forms.CharField(required=False, widget=forms.HiddenInput)
    outpaint_left = outpaint_side("outpaint_left", "Left")
    outpaint_right = outpaint_side("outpaint_right", "Right")
    outpaint_top = outpaint_side("outpaint_top", "Top")
    outpaint_bottom = outpaint_side("outpaint_bottom", "Bottom")
    hires_fix = forms.BooleanField(
        required=False,
        label="Hires fix",
        help_text="Make the image, upscale it, then redraw it at the larger size.",
    )
    hires_scale = forms.FloatField(
        required=False, label="Upscale by", initial=2, **bounds("hires_scale"),
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    hires_steps = forms.IntegerField(
        required=False, label="Hires steps", initial=0, **bounds("hires_steps"),
        help_text="0: as many as the first pass.",
    )
    hires_strength = forms.FloatField(
        required=False, label="Hires denoising", initial=0.5, **bounds("hires_strength"),
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    seed = SeedOrRandomField(
        required=False, **bounds("seed"),
        widget=forms.NumberInput(attrs={"placeholder": "Random"}),
        help_text="Empty or -1 for a random seed; it is always recorded.",
    )
    variation_seed = forms.IntegerField(
        required=False, **bounds("variation_seed"),
        widget=forms.NumberInput(attrs={"placeholder": "Random"}),
    )
    variation_strength = forms.FloatField(
        required=False, initial=0, **bounds("variation_strength"),
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        help_text="Above 0: variations of the seed's image, more different as it grows "
        "(text to image only).",
    )

    # ControlNet (canny): the edges of an image steer the composition.
    control_model = forms.ModelChoiceField(
        queryset=DiffusionModel.objects.none(),
        required=False,
        label="ControlNet model",
        empty_label="None",
        error_messages={"invalid_choice": "Unknown ControlNet model: choose one from the list."},
    )
    control_image = forms.IntegerField(required=False, widget=forms.HiddenInput)
    control_upload = forms.FileField(
        required=False,
        label="Control image",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
        help_text="It guides the composition; it is resized to the chosen size.",
    )
    control_low_threshold = forms.IntegerField(
        required=False, label="Canny low threshold", initial=DEFAULT_LOW_THRESHOLD,
        **bounds("control_low_threshold"),
    )
    control_high_threshold = forms.IntegerField(
        required=False, label="Canny high threshold", initial=DEFAULT_HIGH_THRESHOLD,
        **bounds("control_high_threshold"),
    )
    control_scale = forms.FloatField(
        required=False, label="Control weight", initial=1.0, **bounds("control_scale"),
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        help_text="How strongly the edges steer the image (A1111's ControlNet weight).",
    )

    # IP-Adapter: an image prompt, its look and subject steer the image.
    ip_adapter_model = LibraryModelField(
        queryset=DiffusionModel.objects.none(),
        required=False,
        label="IP-Adapter model",
        empty_label="None",
        error_messages={"invalid_choice": "Unknown IP-Adapter model: choose one from the list."},
    )
    ip_adapter_image = forms.IntegerField(required=False, widget=forms.HiddenInput)
    ip_adapter_upload = forms.FileField(
        required=False,
        label="Image prompt",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
        help_text="PNG, JPEG or WebP: its subject and style steer the image, with the prompt.",
    )
    ip_adapter_scale = forms.FloatField(
        required=False, label="Image prompt weight", initial=0.6,
        **bounds("ip_adapter_scale"),
        widget=forms.NumberInput(attrs={"step": "0.05"}),
        help_text="0 ignores the image; 1 and above let it dominate the text.",
    )
    # The gallery image "Remix" opened the form from (lineage: GenerationJob.remix_of).
    remix_of = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, models=None, user=None, project=None, **kwargs):
        """`models`: those offered; with `user` and `project` and no `models`, the ones the
        user may use in the project (DiffusionModelQuerySet.available_to).

        Posted with `user` and `project`, the form checks the model and IP-Adapter it is
        sent by their refusal_reason (which agrees with available_to), each found by id
        with the team's setting for it: building available_to's query costs more than the
        check. The page that shows a posted form again lists the choices itself
        (generation.views.studio_context)."""
        super().__init__(*args, **kwargs)
        self.user = user
        self.project = project
        # The prompts as typed, before the styles: what the form shows again.
        self.typed_prompts = {}
        self.offer_styles(project.team if project is not None else None)
        ip_adapters = DiffusionModel.objects.usable().filter(kind=ModelKind.IP_ADAPTER)
        if user is not None and project is not None:
            team = project.team
            library = with_team_setting(DiffusionModel.objects.all(), team)
            if models is None:
                models = library if self.is_bound else DiffusionModel.objects.available_to(
                    user, project
                )
            ip_adapters = library if self.is_bound else DiffusionModel.objects.available_to(
                user, project, kind=ModelKind.IP_ADAPTER
            )
            self.fields["model"].refusal = lambda model: model.refusal_reason(
                user, team, **fetched_team_setting(model, team)
            )
            if self.is_bound:
                self.fields["model"].team = self.fields["ip_adapter_model"].team = team
            self.fields["ip_adapter_model"].refusal = lambda model: model.refusal_reason(
                user, team, kind=ModelKind.IP_ADAPTER, **fetched_team_setting(model, team)
            )
        if models is None:
            models = DiffusionModel.objects.usable()
        self.fields["model"].queryset = models
        controlnets = DiffusionModel.objects.usable().filter(kind=ModelKind.CONTROLNET)
        if project is not None:
            controlnets = controlnets.exclude(
                team_settings__team=project.team, team_settings__is_enabled=False
            )
        self.fields["control_model"].queryset = controlnets.order_by("name")
        self.fields["ip_adapter_model"].queryset = ip_adapters.order_by("name")

    def offer_styles(self, team):
        """Offer `team`'s styles (none without a team), read when first needed: a form
        posted without styles (as most API requests are) never reads them."""
        self.styles_team = team
        self.__dict__.pop("team_styles", None)
        self.fields["styles"].choices = LazyChoices(
            lambda: [(name, name) for name in self.team_styles]
        )

    @cached_property
    def team_styles(self):
        """{name: Style} of the team offer_styles named."""
        return team_styles(self.styles_team) if self.styles_team is not None else {}

    def clean_remix_of(self):
        """The remixed image, if the user may (still) see it: own teams' or public ones."""
        image_id = self.cleaned_data["remix_of"]
        if image_id is None:
            return None
        image = Image.objects.select_related("project__team").filter(pk=image_id).first()
        if image is None or self.user is None or not image.may_view(self.user):
            raise forms.ValidationError(
                "The image you remixed is gone or no longer visible to you: "
                "open Remix on an image again, or generate without it."
            )
        return image

    def clean_ip_adapter_image(self):
        """The gallery image used as the image prompt, if the user may see it."""
        return self._visible_gallery_image("ip_adapter_image", "image prompt")

    def clean_ip_adapter_upload(self):
        return self._clean_image_upload("ip_adapter_upload")

    def clean_ip_adapter_scale(self):
        value = self.cleaned_data["ip_adapter_scale"]
        return 0.6 if value is None else value

    def _clean_family(self, cleaned, part, kind):
        """A ControlNet or IP-Adapter of the model's family."""
        extra, model = cleaned.get(f"{part}_model"), cleaned.get("model")
        if extra is not None and model is not None and extra.family != model.family:
            self.add_error(
                f"{part}_model",
                f"“{extra.name}” is a {extra.get_family_display()} {kind}; "
                f"“{model.name}” is {model.get_family_display()}. Choose one of the same family.",
            )

    def clean_control_image(self):
        """The gallery image whose edges guide the image, if the user may see it."""
        return self._visible_gallery_image("control_image", "control image")

    def clean_control_upload(self):
        return self._clean_image_upload("control_upload")

    def clean_control_low_threshold(self):
        value = self.cleaned_data["control_low_threshold"]
        return DEFAULT_LOW_THRESHOLD if value is None else value

    def clean_control_high_threshold(self):
        value = self.cleaned_data["control_high_threshold"]
        return DEFAULT_HIGH_THRESHOLD if value is None else value

    def clean_control_scale(self):
        value = self.cleaned_data["control_scale"]
        return 1.0 if value is None else value

    def clean_clip_skip(self):
        return self.cleaned_data["clip_skip"] or 1  # left empty: the usual 1

    def clean_batch_size(self):
        return self.cleaned_data["batch_size"] or 1

    def clean_batch_count(self):
        return self.cleaned_data["batch_count"] or 1

    def clean_source_image(self):
        """The gallery image to start from, if the user may see it."""
        return self._visible_gallery_image("source_image", "source image")

    def clean_source_upload(self):
        return self._clean_image_upload("source_upload")

    def _visible_gallery_image(self, field, what):
        image_id = self.cleaned_data[field]
        if image_id is None:
            return None
        image = Image.objects.select_related("project__team").filter(pk=image_id).first()
        if image is None or self.user is None or not can(self.user, "view", image):
            raise forms.ValidationError(f"Unknown {what}: pick one from a gallery you see.")
        return image

    @cached_property
    def pixel_budget(self):
        """The decoded pixels the form's images (source, mask, control, image prompt) share."""
        return PixelBudget()

    def _clean_image_upload(self, field):
        """An uploaded image, checked and rebuilt from its pixels (studio.uploads)."""
        upload = self.cleaned_data[field]
        if not upload:
            return None
        try:
            return image_from_upload(upload, budget=self.pixel_budget)
        except UploadRejected as error:
            raise forms.ValidationError(str(error)) from error

    def clean_mask_data(self):
        """The painted mask as a greyscale PIL image, checked like any uploaded image."""
        data = self.cleaned_data["mask_data"].strip()
        if not data:
            return None
        if not data.startswith(MASK_DATA_PREFIX):
            raise forms.ValidationError("The mask must be a PNG painted in the mask editor.")
        try:
            png = base64.b64decode(data.removeprefix(MASK_DATA_PREFIX), validate=True)
        except (binascii.Error, ValueError) as error:
            raise forms.ValidationError("The mask is damaged; paint it again.") from error
        try:
            mask = image_from_upload(ContentFile(png, name="mask.png"), budget=self.pixel_budget)
        except UploadRejected as error:
            raise forms.ValidationError(f"Mask: {error}") from error
        return mask.convert("L")

    def _clean_outpaint_side(self, name):
        return self.cleaned_data[name] or 0

    def clean_outpaint_left(self):
        return self._clean_outpaint_side("outpaint_left")

    def clean_outpaint_right(self):
        return self._clean_outpaint_side("outpaint_right")

    def clean_outpaint_top(self):
        return self._clean_outpaint_side("outpaint_top")

    def clean_outpaint_bottom(self):
        return self._clean_outpaint_side("outpaint_bottom")

    def clean_strength(self):
        strength = self.cleaned_data["strength"]
        return 0.75 if strength is None else strength

    def clean_variation_strength(self):
        return self.cleaned_data["variation_strength"] or 0.0

    def clean_hires_scale(self):
        return self.cleaned_data["hires_scale"] or 2.0

    def clean_hires_steps(self):
        return self.cleaned_data["hires_steps"] or 0

    def clean_hires_strength(self):
        return self.cleaned_data["hires_strength"] or 0.5

    def clean_prompt(self):
        prompt = self.cleaned_data["prompt"].strip()
        if not prompt:
            raise forms.ValidationError("Write a prompt: describe what the image should show.")
        return prompt

    def clean(self):
        cleaned = super().clean()
        self._apply_styles(cleaned)
        # The rules between fields are the recipe's (generation.recipe), for every entry point.
        for field, message in recipe_problems(cleaned):
            self.add_error(field, message)
        # A control image without a ControlNet model is for a model that reads it itself.
        model = cleaned.get("model")
        for field, message in controlnet_model_problems(
            cleaned, model_reads_control_image=bool(model and model.is_flux_control)
        ):
            self.add_error(field, message)
        self._clean_family(cleaned, "control", "ControlNet")
        self._clean_family(cleaned, "ip_adapter", "IP-Adapter")
        admission.run(admission.form_checks, self, cleaned)
        self._clean_dynamic_prompts(cleaned)
        clean_lora_stack(self, cleaned, self.project.team if self.project else None)
        self._clean_flow_family(cleaned)
        self._clean_shift(cleaned)
        self._clean_model_modes(cleaned)
        self._clean_flux_control(cleaned)
        return cleaned

    def _clean_model_modes(self, cleaned):
        """A model that runs only some modes (a FLUX.1 Fill model: inpaint and outpaint; a
        Depth or Canny one: text to image) is refused in the others, here rather than by the
        worker."""
        model = cleaned.get("model")
        mode = flat_mode(cleaned)
        if model is None or mode in model.modes():
            return
        if model.is_flux_control:
            self.add_error("model", f"“{model.name}” is a FLUX.1 Depth or Canny model: it makes "
                                    "images from text and a control image only, not "
                                    f"{JobMode(mode).label.lower()}. Remove the source image, "
                                    "or choose another model.")
            return
        self.add_error("model", f"“{model.name}” is a FLUX.1 Fill model: it can only "
                                f"{modes_text(model)}, not {JobMode(mode).label.lower()}. Choose a "
                                "source image and paint a mask (inpaint) or extend its sides "
                                "(outpaint), or choose another model.")

    def _clean_flux_control(self, cleaned):
        """A FLUX.1 Depth or Canny model makes images from text steered by a control image it
        reads itself (a depth map, edges; as given): it needs the image, and takes no
        ControlNet model and no hires fix (whose second pass redraws a source)."""
        model = cleaned.get("model")
        if model is None or not model.is_flux_control:
            return
        name = f"“{model.name}” is a FLUX.1 Depth or Canny model"
        if not (cleaned.get("control_image") or cleaned.get("control_upload")):
            self.add_error("control_upload", f"{name}: choose the control image it follows "
                                             "(a depth map or an edge map).")
        if cleaned.get("control_model"):
            self.add_error("control_model", f"{name}: it reads the control image itself. "
                                            "Leave the ControlNet model at None.")
        if cleaned.get("hires_fix"):
            self.add_error("hires_fix", f"{name}: it makes images from text and a control image "
                                        "only, and hires fix's second pass is image to image. "
                                        "Turn it off.")

    def _clean_shift(self, cleaned):
        """The shift belongs to flow matching: other families' schedules have none."""
        model = cleaned.get("model")
        if cleaned.get("shift") is not None and model and model.family not in FLOW_FAMILIES:
            self.add_error("shift", f"{model.get_family_display()} models have no shift: it "
                                    "applies to FLUX.1 and SD 3.x models. Leave it empty.")

    def _clean_flow_family(self, cleaned):
        """FLUX.1 and SD 3.x models run every mode, hires fix, LoRAs and ControlNets of their
        family (SD 3.x's for txt2img only), IP-Adapters too (issue #17): what else the form
        asks of one is refused, naming the family, on the field that asks it."""
        model = cleaned.get("model")
        if model is None or model.family not in FLOW_FAMILIES:
            return
        family = model.get_family_display()
        # An SD 3.x ControlNet runs for txt2img only; hires fix's second pass is img2img.
        redraws = model.family == ModelFamily.SD3 and any(
            cleaned.get(name) for name in ("source_image", "source_upload", "hires_fix")
        )
        asked = {
            "control_model": (
                "ControlNet with a source image or hires fix",
                cleaned.get("control_model") and redraws,
            ),
            "clip_skip": ("clip skip", (cleaned.get("clip_skip") or 1) > 1),
        }
        for field, (feature, used) in asked.items():
            if used:
                self.add_error(field, f"{family} models don't support {feature} in the "
                                      "studio yet.")
        if cleaned.get("sampler") not in ("", None, *FLOW_SAMPLER_NAMES):
            self.add_error("sampler", f"{family} models run the flow-matching samplers "
                                      f"{', '.join(FLOW_SAMPLER_NAMES)} in the studio: choose "
                                      "one or the model default.")
        steps = cleaned.get("steps") or 1
        for field in ("prompt", "negative_prompt"):
            text = cleaned.get(field) or ""
            # A prompt with errors of its own (one too costly to parse) is left to them;
            # FLUX.1 reads no negative prompt.
            if field in self.errors or (model.family == ModelFamily.FLUX1 and field != "prompt"):
                continue
            if len(prompt_schedule(text, steps)) > 1:
                self.add_error(field, f"{family} models don't support prompt editing or "
                                      "alternation ([a:b:0.5], [a|b]) in the studio yet.")
        # The sizes the job makes: the canvas (outpainting adds its sides) and hires fix's.
        for field in ("width", "height", *OUTPAINT_SIDES):
            side = cleaned.get(field)
            if side and side % FLOW_SIZE_MULTIPLE:
                self.add_error(field, f"{family} models need sides that are multiples of "
                                      f"{FLOW_SIZE_MULTIPLE}, not {side}.")
        width, height, scale = (cleaned.get(name) for name in ("width", "height", "hires_scale"))
        if cleaned.get("hires_fix") and width and height and scale:
            upscaled = GenerationJob(width=width, height=height, hires_scale=scale).hires_size()
            if any(side % FLOW_SIZE_MULTIPLE for side in upscaled):
                self.add_error("hires_scale", f"{family} models need sides that are multiples "
                                              f"of {FLOW_SIZE_MULTIPLE}: upscaled by {scale:g}, "
                                              f"{width}x{height} becomes {upscaled[0]}x"
                                              f"{upscaled[1]}.")

    def _apply_styles(self, cleaned):
        """The picked styles merged into the prompts as A1111 merges them, before anything
        reads the prompts: the prompt policy, the variants and wildcards, and the job all see
        the styled text."""
        names = list(dict.fromkeys(cleaned.get("styles") or []))
        cleaned["styles"] = names
        prompt, negative = cleaned.get("prompt"), cleaned.get("negative_prompt")
        if not names or prompt is None or negative is None:
            return
        styled = dict(zip(
            ("prompt", "negative_prompt"),
            styled_prompts(prompt, negative, [self.team_styles[name] for name in names]),
            strict=True,
        ))
        too_long = {field: text for field, text in styled.items() if len(text) > MAX_PROMPT}
        for field, text in too_long.items():
            label = "prompt" if field == "prompt" else "negative prompt"
            self.add_error("styles", f"With these styles the {label} has {len(text):,} "
                                     f"characters, more than the {MAX_PROMPT:,} allowed.")
        if not too_long:
            self.typed_prompts = {"prompt": prompt, "negative_prompt": negative}
            cleaned.update(styled)

    def _clean_dynamic_prompts(self, cleaned):
        """{ } variants and __wildcards__: readable and the team's, and each job's expansion
        within the prompt's length and the prompt policy. A seed left random is chosen here,
        so the expansions checked are those the jobs get (jobs_create expands the same)."""
        prompt, negative = cleaned.get("prompt"), cleaned.get("negative_prompt") or ""
        if prompt is None or self.project is None or self.errors:
            return
        if not (is_dynamic(prompt) or is_dynamic(negative)):
            return
        wildcards = team_wildcards(self.project.team)
        problems = (template_problems(prompt, "prompt", wildcards)
                    + template_problems(negative, "negative_prompt", wildcards))
        if cleaned.get("seed") is None and not problems:
            cleaned["seed"] = random_seed()
        for prompts in [] if problems else job_prompts(cleaned, wildcards):
            steps = cleaned.get("steps") or 1
            problems = (expansion_problems(prompts[0], "prompt", steps)
                        + expansion_problems(prompts[1], "negative_prompt", steps))
            if problems:
                break
            admission.run(admission.form_checks, self,
                          {"prompt": prompts[0], "negative_prompt": prompts[1]})
            if self.errors:
                return
        for field, message in problems:
            self.add_error(field, message)


# Once, on the class's fields: each form's fields are copies of these, messages included.
for _name, _field in GenerationForm.base_fields.items():
    if isinstance(_field, (forms.IntegerField, forms.FloatField)) and not _field.widget.is_hidden:
        _field.error_messages.update(range_error_messages(_field, _name))
