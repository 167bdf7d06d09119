"""The recipe: everything a generation job is made from, as one typed, versioned object.

Every way a job's parameters travel goes through `Recipe`, each as an adapter here or beside
its format's reader:

- the form and the importers: flat values named as `GenerationForm`'s fields
  (`Recipe.from_flat`, `Recipe.to_flat`, `Recipe.form_initial`);
- the job row (`Recipe.job_fields`, `Recipe.from_job`);
- the worker request (`generation.execution.generation_requests` reads `job.recipe()`);
- the PNG: A1111's infotext (`parameters_import/a1111.py`: `recipe_infotext` beside
  `parse_a1111_infotext`) and the studio's JSON spec (`parameters_import/studio.py`:
  `recipe_spec` beside `parse_studio_spec`);
- JSON (`model_dump` / `Recipe.model_validate`), for the HTTP API.

Library models, LoRAs and gallery images are referred to by id, uploads by their storage
name. The limits are written once, in LIMITS: the form's fields take theirs from it, and
`recipe_problems` holds the rules between fields, for the form and `Recipe.validated` alike.
tests/generation/test_recipe.py walks every field through every adapter and back.
"""

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from generation.seeds import MAX_SEED
from gpu_workers.control import (
    DEFAULT_HIGH_THRESHOLD,
    DEFAULT_LOW_THRESHOLD,
    MAX_CONDITIONING_SCALE,
    MAX_THRESHOLD,
)
from gpu_workers.prompt_syntax import PromptTooComplex, prompt_schedule
from gpu_workers.requests import MAX_IP_ADAPTER_SCALE
from gpu_workers.samplers import SAMPLERS

if TYPE_CHECKING:
    from generation.models import GenerationJob

RECIPE_VERSION: Literal[1] = 1
MAX_PROMPT = 2000
MAX_OUTPAINT = 1024
MAX_CLIP_SKIP = 12  # the layers of CLIP ViT-L
OUTPAINT_SIDES = ("outpaint_left", "outpaint_right", "outpaint_top", "outpaint_bottom")

# (least, most) of each number, by its flat name: the form's fields and the recipe share them.
LIMITS = {
    "steps": (1, settings.STUDIO_MAX_STEPS),
    "guidance_scale": (0.0, 30.0),
    # The flow-matching shift of FLUX.1 / SD 3.x: ComfyUI's ModelSamplingSD3 bounds, but
    # above 0 (its smallest step), as a shift of 0 makes every step pure noise.
    "shift": (0.01, 100.0),
    "width": (64, 2048),
    "height": (64, 2048),
    "seed": (0, MAX_SEED),
    "clip_skip": (1, MAX_CLIP_SKIP),
    "batch_size": (1, settings.STUDIO_MAX_BATCH_SIZE),
    "strength": (0.01, 1.0),
    "variation_seed": (0, MAX_SEED),
    "variation_strength": (0.0, 1.0),
    "hires_scale": (1.05, 4.0),
    "hires_steps": (0, settings.STUDIO_MAX_STEPS),
    "hires_strength": (0.01, 1.0),
    "control_low_threshold": (0, MAX_THRESHOLD),
    "control_high_threshold": (0, MAX_THRESHOLD),
    "control_scale": (0.0, MAX_CONDITIONING_SCALE),
    "ip_adapter_scale": (0.0, MAX_IP_ADAPTER_SCALE),
    **{side: (0, MAX_OUTPAINT) for side in OUTPAINT_SIDES},
}


def limited(name: str, default: Any = ...) -> Any:
    """A pydantic Field bounded by LIMITS[name]."""
    least, most = LIMITS[name]
    return Field(default, ge=least, le=most)


class Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


PartT = TypeVar("PartT", bound=Part)


class ImageRef(Part):
    """An image the job reads: a gallery image (by id) or a stored upload (by name)."""

    image: int | None = None
    upload: str = ""

    @model_validator(mode="after")
    def one_of_them(self) -> Self:
        if (self.image is None) == (not self.upload):
            raise ValueError("give either a gallery image id or an upload, one of them")
        return self


class Hires(Part):
    """A1111's hires fix: the image upscaled by `scale` (Lanczos), then redrawn at that size
    with `steps` (0: as many as the first pass) at `strength`."""

    scale: float = limited("hires_scale", 2.0)
    steps: int = limited("hires_steps", 0)
    strength: float = limited("hires_strength", 0.5)


class Outpaint(Part):
    """Pixels added on each side of the source."""

    left: int = limited("outpaint_left", 0)
    right: int = limited("outpaint_right", 0)
    top: int = limited("outpaint_top", 0)
    bottom: int = limited("outpaint_bottom", 0)


class Variation(Part):
    """A1111's variations: the seed's noise moved towards `seed`'s by `strength`."""

    seed: int | None = limited("variation_seed", None)
    strength: float = limited("variation_strength")


class ControlNet(Part):
    """A library ControlNet (canny) steered by the edges of `image`; without a `model`, the
    control image a FLUX.1 Depth or Canny [dev] model reads itself, as it is (the recipe
    knows its model by id only: the form refuses a control image without a ControlNet model
    for every other model, `controlnet_model_problems`)."""

    model: int | None = None
    image: ImageRef
    low_threshold: int = limited("control_low_threshold", DEFAULT_LOW_THRESHOLD)
    high_threshold: int = limited("control_high_threshold", DEFAULT_HIGH_THRESHOLD)
    scale: float = limited("control_scale", 1.0)


class IPAdapter(Part):
    """A library IP-Adapter and its image prompt."""

    model: int
    image: ImageRef
    scale: float = limited("ip_adapter_scale", 0.6)


class LoraUse(Part):
    """One LoRA of the stack: picked in the form, or written in the prompt as <lora:…>."""

    lora: int
    weight: float
    in_prompt: bool = False


class Recipe(Part):
    version: Literal[1] = RECIPE_VERSION
    model: int
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    negative_prompt: str = Field("", max_length=MAX_PROMPT)
    # The prompts as typed, when their { } variants and __wildcards__ were expanded into
    # prompt and negative_prompt (generation.wildcards.expansion); blank otherwise.
    template: str = Field("", max_length=MAX_PROMPT)
    negative_template: str = Field("", max_length=MAX_PROMPT)
    # The team's styles (generation.styles) applied to the prompts as typed, by name, in
    # order: the prompts above hold their text already.
    styles: tuple[str, ...] = ()
    steps: int = limited("steps", 25)
    guidance_scale: float = limited("guidance_scale", 7.0)
    # The size asked for: the source's when outpainting, which adds its sides to it.
    width: int = limited("width", 512)
    height: int = limited("height", 512)
    seed: int | None = limited("seed", None)  # None: a random one, chosen when queued
    sampler: str = ""  # an A1111 sampler name; blank: the model's default
    # FLUX.1 / SD 3.x: the flow-matching shift (larger: more of the steps at high noise);
    # None: the model's default.
    shift: float | None = limited("shift", None)
    clip_skip: int = limited("clip_skip", 1)
    batch_size: int = limited("batch_size", 1)
    source: ImageRef | None = None
    strength: float = limited("strength", 0.75)
    mask: str = ""  # the stored mask painted over the source (white: redraw)
    outpaint: Outpaint | None = None
    hires: Hires | None = None
    control: ControlNet | None = None
    ip_adapter: IPAdapter | None = None
    variation: Variation | None = None
    loras: tuple[LoraUse, ...] = ()
    remix_of: int | None = None  # the gallery image "Remix" opened the form from

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.sampler and self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}")
        problems = recipe_problems(self.to_flat())
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        return self

    @property
    def mode(self) -> str:
        """The JobMode value the recipe runs in."""
        return job_mode(
            source=self.source is not None, mask=bool(self.mask), outpaint=self.outpaint is not None
        )

    def canvas_size(self) -> tuple[int, int]:
        """The image's size: outpainting adds its sides to the source's."""
        extra = self.outpaint or Outpaint()
        return self.width + extra.left + extra.right, self.height + extra.top + extra.bottom

    # -- Flat values: the form's fields (and what the importers fill in) ---------------------

    @classmethod
    def from_flat(
        cls, values: Mapping[str, Any], *, loras: Iterable["LoraUse"] | None = None,
        trusted: bool = False,
    ) -> "Recipe":
        """The recipe of flat values named as GenerationForm's fields. Library models, LoRA
        choices and gallery images may be objects or ids; uploads are storage names.
        `loras`: the stack as LoraUse items, where the caller has it resolved. `trusted`:
        values accepted before (a job row), built without checking them again, so a job
        queued under older limits still runs."""

        def make(part: type[PartT], **fields: Any) -> PartT:
            return part.model_construct(**fields) if trusted else part(**fields)

        get = values.get
        sides = {side.removeprefix("outpaint_"): get(side) or 0 for side in OUTPAINT_SIDES}
        control_model, adapter_model = get("control_model"), get("ip_adapter_model")
        has_control_image = get("control_image") is not None or bool(get("control_upload"))

        def image_ref(image: Any, upload: str | None, *, needed: bool) -> ImageRef | None:
            if image is None and not upload:
                # A trusted row's image that was deleted since: still the job's image.
                return ImageRef.model_construct(image=None, upload="") if needed else None
            return make(ImageRef, image=pk_of(image), upload=upload or "")

        return make(
            cls,
            model=pk_of(get("model")),
            prompt=get("prompt") or "",
            negative_prompt=get("negative_prompt") or "",
            template=get("template") or "",
            negative_template=get("negative_template") or "",
            styles=tuple(get("styles") or ()),
            steps=get("steps"),
            guidance_scale=get("guidance_scale"),
            width=get("width"),
            height=get("height"),
            seed=get("seed"),
            sampler=get("sampler") or "",
            shift=get("shift"),
            clip_skip=get("clip_skip") or 1,
            batch_size=get("batch_size") or 1,
            source=image_ref(get("source_image"), get("source_upload"),
                             needed=trusted and get("mode", "txt2img") != "txt2img"),
            strength=default_if_none(get("strength"), 0.75),
            mask=get("mask_data") or "",
            outpaint=make(Outpaint, **sides) if any(sides.values()) else None,
            hires=make(
                Hires,
                scale=get("hires_scale") or 2.0,
                steps=get("hires_steps") or 0,
                strength=get("hires_strength") or 0.5,
            )
            if get("hires_fix")
            else None,
            control=make(
                ControlNet,
                model=pk_of(control_model),
                image=image_ref(get("control_image"), get("control_upload"), needed=trusted),
                low_threshold=default_if_none(
                    get("control_low_threshold"), DEFAULT_LOW_THRESHOLD
                ),
                high_threshold=default_if_none(
                    get("control_high_threshold"), DEFAULT_HIGH_THRESHOLD
                ),
                scale=default_if_none(get("control_scale"), 1.0),
            )
            if control_model is not None or has_control_image
            else None,
            ip_adapter=make(
                IPAdapter,
                model=pk_of(adapter_model),
                image=image_ref(get("ip_adapter_image"), get("ip_adapter_upload"),
                                needed=trusted),
                scale=default_if_none(get("ip_adapter_scale"), 0.6),
            )
            if adapter_model is not None
            else None,
            variation=make(Variation, seed=get("variation_seed"),
                           strength=get("variation_strength"))
            if get("variation_strength")
            else None,
            loras=tuple(loras if loras is not None else lora_uses(get("loras") or [])),
            remix_of=pk_of(get("remix_of")),
        )

    def to_flat(self) -> dict[str, Any]:
        """Flat values named as GenerationForm's fields (refs as ids, uploads as names)."""
        source, control, adapter = self.source, self.control, self.ip_adapter
        outpaint, hires, variation = self.outpaint or Outpaint(), self.hires, self.variation
        return {
            "model": self.model,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "template": self.template,
            "negative_template": self.negative_template,
            "styles": list(self.styles),
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "sampler": self.sampler,
            "shift": self.shift,
            "clip_skip": self.clip_skip,
            "batch_size": self.batch_size,
            "source_image": source and source.image,
            "source_upload": source.upload if source else "",
            "strength": self.strength,
            "mask_data": self.mask,
            **{f"outpaint_{side}": getattr(outpaint, side) for side in Outpaint.model_fields},
            "hires_fix": hires is not None,
            "hires_scale": (hires or Hires()).scale,
            "hires_steps": (hires or Hires()).steps,
            "hires_strength": (hires or Hires()).strength,
            "control_model": control and control.model,
            "control_image": control and control.image.image,
            "control_upload": control.image.upload if control else "",
            "control_low_threshold": (
                control.low_threshold if control else DEFAULT_LOW_THRESHOLD
            ),
            "control_high_threshold": (
                control.high_threshold if control else DEFAULT_HIGH_THRESHOLD
            ),
            "control_scale": control.scale if control else 1.0,
            "ip_adapter_model": adapter and adapter.model,
            "ip_adapter_image": adapter and adapter.image.image,
            "ip_adapter_upload": adapter.image.upload if adapter else "",
            "ip_adapter_scale": adapter.scale if adapter else 0.6,
            "variation_seed": variation and variation.seed,
            "variation_strength": variation.strength if variation else 0.0,
            "loras": [use.model_dump() for use in self.loras],
            "remix_of": self.remix_of,
        }

    def form_initial(self) -> dict[str, Any]:
        """What GenerationForm shows to make this again: gallery images, not uploads (a file
        input can't be filled in), the prompts as they ran (not their templates, and with
        their styles' text in them, so no style is picked again), and the LoRAs picked in
        the form (those written in the prompt come back with it)."""
        flat = self.to_flat()
        for name in ("source_upload", "mask_data", "control_upload", "ip_adapter_upload",
                     "remix_of", "template", "negative_template", "styles"):
            del flat[name]
        flat["loras"] = [{"id": use.lora, "weight": use.weight}
                         for use in self.loras if not use.in_prompt]
        return flat

    # -- The job row ---------------------------------------------------------------------

    def job_fields(
        self, *, seed: int | None = None, variation_seed: int | None = None
    ) -> dict[str, Any]:
        """GenerationJob's columns (ids for foreign keys). `seed`, `variation_seed`: those
        chosen for a recipe that left them random."""
        width, height = self.canvas_size()
        outpaint, hires, variation = self.outpaint or Outpaint(), self.hires, self.variation
        control, adapter = self.control, self.ip_adapter
        return {
            "model_id": self.model,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "prompt_template": self.template,
            "negative_prompt_template": self.negative_template,
            "styles": list(self.styles),
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "width": width,
            "height": height,
            "seed": self.seed if seed is None else seed,
            "sampler": self.sampler,
            "shift": self.shift,
            "clip_skip": self.clip_skip,
            "batch_size": self.batch_size,
            "source_image_id": self.source and self.source.image,
            "source_upload": self.source.upload if self.source else "",
            "strength": self.strength,
            "mode": self.mode,
            "mask_upload": self.mask,
            **{f"outpaint_{side}": getattr(outpaint, side) for side in Outpaint.model_fields},
            "hires_scale": hires.scale if hires else 1.0,
            "hires_steps": hires.steps if hires else 0,
            "hires_strength": hires.strength if hires else 0.5,
            "control_model_id": control and control.model,
            "control_image_id": control and control.image.image,
            "control_upload": control.image.upload if control else "",
            "control_low_threshold": (
                control.low_threshold if control else DEFAULT_LOW_THRESHOLD
            ),
            "control_high_threshold": (
                control.high_threshold if control else DEFAULT_HIGH_THRESHOLD
            ),
            "control_scale": control.scale if control else 1.0,
            "ip_adapter_model_id": adapter and adapter.model,
            "ip_adapter_image_id": adapter and adapter.image.image,
            "ip_adapter_upload": adapter.image.upload if adapter else "",
            "ip_adapter_scale": adapter.scale if adapter else 0.6,
            "variation_seed": (
                (variation.seed if variation_seed is None else variation_seed)
                if variation
                else None
            ),
            "variation_strength": variation.strength if variation else 0.0,
            "remix_of_id": self.remix_of,
        }

    @classmethod
    def from_job(cls, job: "GenerationJob") -> "Recipe":
        """The recipe a job row was made from (its LoRAs from its JobLora rows), as accepted
        when it was queued."""
        left, right = job.outpaint_left, job.outpaint_right
        top, bottom = job.outpaint_top, job.outpaint_bottom
        return cls.from_flat(
            {
                "model": job.model_id,
                "prompt": job.prompt,
                "negative_prompt": job.negative_prompt,
                "template": job.prompt_template,
                "negative_template": job.negative_prompt_template,
                "styles": job.styles,
                "steps": job.steps,
                "guidance_scale": job.guidance_scale,
                "width": job.width - left - right,
                "height": job.height - top - bottom,
                "seed": job.seed,
                "sampler": job.sampler,
                "shift": job.shift,
                "clip_skip": job.clip_skip,
                "batch_size": job.batch_size,
                "mode": job.mode,
                "source_image": job.source_image_id,
                "source_upload": job.source_upload.name,
                "strength": job.strength,
                "mask_data": job.mask_upload.name,
                "outpaint_left": left,
                "outpaint_right": right,
                "outpaint_top": top,
                "outpaint_bottom": bottom,
                "hires_fix": job.hires_scale > 1,
                "hires_scale": job.hires_scale,
                "hires_steps": job.hires_steps,
                "hires_strength": job.hires_strength,
                "control_model": job.control_model_id,
                "control_image": job.control_image_id,
                "control_upload": job.control_upload.name,
                "control_low_threshold": job.control_low_threshold,
                "control_high_threshold": job.control_high_threshold,
                "control_scale": job.control_scale,
                "ip_adapter_model": job.ip_adapter_model_id,
                "ip_adapter_image": job.ip_adapter_image_id,
                "ip_adapter_upload": job.ip_adapter_upload.name,
                "ip_adapter_scale": job.ip_adapter_scale,
                "variation_seed": job.variation_seed,
                "variation_strength": job.variation_strength,
                "remix_of": job.remix_of_id,
            },
            loras=[
                LoraUse(lora=used.lora_id, weight=used.weight, in_prompt=used.in_prompt)
                for used in job.job_loras.all()
                if used.lora_id is not None
            ],
            trusted=True,
        )

    # -- Validation with errors by field ------------------------------------------------

    @classmethod
    def validated(cls, data: Any) -> "Recipe":
        """The recipe of JSON-like `data` (nested, as model_dump writes it), or RecipeInvalid
        naming each wrong field by its flat name (as the form's)."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise RecipeInvalid.from_pydantic(error) from None


class RecipeInvalid(ValueError):
    """Wrong values: {flat field name: [messages]}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items()))
        self.errors = errors

    @classmethod
    def from_pydantic(cls, error: ValidationError) -> "RecipeInvalid":
        errors: dict[str, list[str]] = {}
        for item in error.errors():
            location = [str(part) for part in item["loc"] if not isinstance(part, int)]
            name = flat_name(location) or "recipe"
            message = item["msg"].removeprefix("Value error, ")
            errors.setdefault(name, []).append(message)
        return cls(errors)


# Nested names whose flat (form) name isn't "<part>_<field>".
FLAT_NAMES = {
    ("source", "image"): "source_image",
    ("source", "upload"): "source_upload",
    ("mask",): "mask_data",
    ("control", "image", "image"): "control_image",
    ("control", "image", "upload"): "control_upload",
    ("ip_adapter", "image", "image"): "ip_adapter_image",
    ("ip_adapter", "image", "upload"): "ip_adapter_upload",
    ("control", "model"): "control_model",
    ("ip_adapter", "model"): "ip_adapter_model",
}


def flat_name(location: Iterable[str]) -> str:
    location = tuple(location)
    if location in FLAT_NAMES:
        return FLAT_NAMES[location]
    if len(location) == 2 and location[0] in ("hires", "control", "ip_adapter", "variation",
                                              "outpaint"):
        return "_".join(location)
    return location[0] if location else ""


def recipe_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The rules between fields, as (flat field name, message) pairs: for the form (whose
    values may lack fields that have errors of their own, and hold objects for refs) and the
    recipe alike."""
    get = values.get
    problems = []
    width, height, steps = get("width"), get("height"), get("steps")
    for name, side in (("width", width), ("height", height)):
        if side and side % 8:
            lower = side - side % 8
            problems.append((name, f"{name.capitalize()} must be a multiple of 8 (try {lower} "
                                   f"or {lower + 8})."))
    if width and height and width * height > settings.STUDIO_MAX_PIXELS:
        problems.append(("height", f"{width}x{height} is too large: at most "
                                   f"{settings.STUDIO_MAX_PIXELS:,} pixels in all."))
    has_source = get("source_image") or get("source_upload")
    if get("source_image") and get("source_upload"):
        problems.append(("source_upload",
                         "Use either an uploaded image or a gallery image, not both."))
    if get("hires_fix"):
        problems += hires_problems(values)
    problems += image_mode_problems(values, has_source)
    for field in ("prompt", "negative_prompt"):
        problems += prompt_problems(get(field) or "", field, steps or 1)
    # A control image may come without a ControlNet model (FLUX.1 Depth and Canny read it
    # themselves): the form, which knows the model, checks that (controlnet_model_problems).
    problems += part_image_problems(values, "control", None)
    problems += part_image_problems(values, "ip_adapter", "an IP-Adapter model")
    low, high = get("control_low_threshold"), get("control_high_threshold")
    if get("control_model") and low is not None and high is not None and low > high:
        problems.append(("control_low_threshold",
                         f"The low threshold ({low}) must not be above the high one ({high})."))
    strength = get("strength")
    if has_source and steps and strength and int(steps * strength) < 1:
        problems.append(("strength", f"At {strength:g} of {steps} steps not one step runs; "
                                     "raise the strength or the steps."))
    return problems


def prompt_problems(text: str, field: str, steps: int) -> list[tuple[str, str]]:
    """A prompt whose editing or alternation is too costly to parse (the workers would
    refuse it)."""
    try:
        prompt_schedule(text, steps)
    except PromptTooComplex as error:
        return [(field, str(error))]
    return []


def hires_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    get = values.get
    width, height, steps = get("width"), get("height"), get("steps")
    scale, strength = get("hires_scale"), get("hires_strength")
    if not (width and height and steps and scale and strength):
        return []  # the field's own error says what is wrong
    problems = []
    final_width, final_height = (int(side * scale) // 8 * 8 for side in (width, height))
    if final_width * final_height > settings.STUDIO_MAX_PIXELS:
        problems.append(("hires_scale",
                         f"{width}x{height} upscaled by {scale:g} is {final_width}x"
                         f"{final_height}, more than the {settings.STUDIO_MAX_PIXELS:,} pixels "
                         "allowed; lower the factor."))
    hires_steps = get("hires_steps") or steps
    if int(hires_steps * strength) < 1:
        problems.append(("hires_strength", f"At {strength:g} of {hires_steps} steps the hires "
                                           "pass runs no step; raise it."))
    return problems


def job_mode(*, source: bool, mask: bool, outpaint: bool) -> str:
    """The JobMode value of a recipe or of flat values: a source image redraws (img2img),
    with a mask only part of it (inpaint), with sides added its border (outpaint)."""
    if not source:
        return "txt2img"
    if mask:
        return "inpaint"
    if outpaint:
        return "outpaint"
    return "img2img"


def flat_mode(values: Mapping[str, Any]) -> str:
    """The JobMode value flat values (the form's fields) run in."""
    get = values.get
    return job_mode(
        source=bool(get("source_image") or get("source_upload")),
        mask=bool(get("mask_data")),
        outpaint=any(get(side) for side in OUTPAINT_SIDES),
    )


def image_mode_problems(values: Mapping[str, Any], has_source: Any) -> list[tuple[str, str]]:
    """Mask and outpaint need a source, and exclude each other."""
    get = values.get
    sides = [get(side) or 0 for side in OUTPAINT_SIDES]
    problems = [
        (side, f"Use a multiple of 8 (try {value - value % 8}).")
        for side, value in zip(OUTPAINT_SIDES, sides, strict=True)
        if value % 8
    ]
    outpaint, has_mask = any(sides), bool(get("mask_data"))
    if has_mask and not has_source:
        problems.append(("mask_data", "Choose a source image to paint the mask on."))
    if outpaint and not has_source:
        problems.append(("outpaint_left", "Choose a source image to extend."))
    if has_source and get("variation_strength"):
        problems.append(("variation_strength",
                         "Variations are for text to image: set it to 0."))
    if outpaint and has_mask:
        problems.append(("mask_data", "Outpaint makes its own mask: remove the painted one."))
    width, height = get("width"), get("height")
    if outpaint and width and height:
        left, right, top, bottom = sides
        final_width, final_height = width + left + right, height + top + bottom
        if final_width * final_height > settings.STUDIO_MAX_PIXELS:
            problems.append(("outpaint_left",
                             f"Extended to {final_width}x{final_height}, more than the "
                             f"{settings.STUDIO_MAX_PIXELS:,} pixels allowed; extend less."))
    return problems


def part_image_problems(
    values: Mapping[str, Any], part: str, model_label: str | None
) -> list[tuple[str, str]]:
    """A ControlNet or IP-Adapter needs its image, one of them, and the image its model
    (`model_label`; None: the image may come without one)."""
    get = values.get
    image, upload = get(f"{part}_image"), get(f"{part}_upload")
    problems = []
    if image and upload:
        kind = "control image" if part == "control" else "image prompt"
        problems.append((f"{part}_upload",
                         f"Use either an uploaded {kind} or a gallery image, not both."))
    if get(f"{part}_model") is None:
        if (image or upload) and model_label is not None:
            what = "the control image" if part == "control" else "the image prompt"
            problems.append((f"{part}_model", f"Choose {model_label} for {what}."))
    elif not (image or upload):
        need = ("Choose the image whose edges guide the ControlNet." if part == "control"
                else "Choose the image the IP-Adapter should follow.")
        problems.append((f"{part}_upload", need))
    return problems


def controlnet_model_problems(
    values: Mapping[str, Any], *, model_reads_control_image: bool
) -> list[tuple[str, str]]:
    """A control image needs a ControlNet model, unless the model reads the image itself
    (FLUX.1 Depth or Canny [dev]: `model_reads_control_image`, which the form knows)."""
    get = values.get
    has_image = get("control_image") or get("control_upload")
    if has_image and get("control_model") is None and not model_reads_control_image:
        return [("control_model", "Choose a ControlNet model for the control image.")]
    return []


def lora_uses(items: Iterable[Any]) -> list["LoraUse"]:
    """LoraUse items of LoraChoice objects or {"id"|"lora", "weight", "in_prompt"} dicts."""
    uses = []
    for item in items:
        if isinstance(item, dict):
            uses.append(LoraUse(lora=pk_of(item.get("lora", item.get("id"))),
                                weight=item["weight"], in_prompt=item.get("in_prompt", False)))
        else:
            uses.append(LoraUse(lora=item.lora.pk, weight=item.weight,
                                in_prompt=item.in_prompt))
    return uses


def pk_of(value: Any) -> Any:
    """A model instance's id, or the id itself."""
    return getattr(value, "pk", value)


def default_if_none(value: Any, default: Any) -> Any:
    return default if value is None else value
