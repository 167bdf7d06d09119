"""Plain data passed between the studio and the workers. No torch here: web code imports it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationRequest:
    # Hub id ("runwayml/stable-diffusion-v1-5"), local diffusers folder or local single-file
    # .safetensors checkpoint
    model_source: str
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    seed: int
    # A single-file checkpoint's component configs: a diffusers folder or Hub id of the same
    # architecture. None: the standard configs for its architecture (Hub or its cache).
    model_config: str | None = None
    # A1111 sampler name (gpu_workers.samplers.SAMPLERS), e.g. "DPM++ 2M Karras"; None: the
    # scheduler the model ships with.
    sampler: str | None = None
    # A1111's "Clip skip": 1 uses the text encoder's last layer, 2 the one before it (what
    # anime-style SD1.5 models expect), and so on.
    clip_skip: int = 1
    # img2img: the source image (PIL, RGB, exactly width x height) and how much of it to
    # redraw, 0..1 (A1111's "Denoising strength"). None: txt2img.
    init_image: object = None
    strength: float = 0.75
    # Inpaint (with init_image): a PIL image of init_image's size, white where the image is
    # redrawn, black where it is kept. Outpainting is inpainting a canvas made larger.
    mask_image: object = None
    loras: tuple = ()  # LoraRef items, stacked
    # txt2img variations (A1111's "Variation seed"): the seed's noise moved towards this
    # seed's by `variation_strength` (0: none, 1: the variation seed's image).
    variation_seed: int = 0
    variation_strength: float = 0.0
    # ControlNet (ControlRef) or None.
    control: object = None
    # IP-Adapter image prompt (IPAdapterRef) or None.
    ip_adapter: object = None
    # Textual-inversion embeddings (EmbeddingRef items) the prompts name.
    embeddings: tuple = ()
    # Hires fix's second pass: the first pass's steps. A1111 schedules prompt editing over
    # both passes: in the second, [a:b:0.5] is "b" throughout, [a:b:1.5] changes half-way
    # and [a:b:25] after step 25 - first_pass_steps. None: a pass of its own.
    first_pass_steps: int | None = None
    # FLUX.1 / SD 3.x: the flow-matching shift (ComfyUI's ModelSamplingSD3 "shift", Forge's
    # "Shift"): larger spends more of the steps at high noise. None: the model's scheduler
    # default (its config's shift, or FLUX.1's resolution-dependent shift).
    shift: float | None = None

    @property
    def mode(self) -> str:
        if self.init_image is None:
            return "txt2img"
        return "img2img" if self.mask_image is None else "inpaint"

    def denoising_steps(self) -> int:
        """Steps actually run: img2img skips the first (1 - strength) of them, as A1111 does."""
        if self.init_image is None:
            return self.steps
        return img2img_steps(self.steps, self.strength)


def img2img_steps(steps: int, strength: float) -> int:
    """The steps img2img runs out of `steps` at `strength` (diffusers' and A1111's count)."""
    return min(int(steps * strength), steps)


@dataclass(frozen=True)
class LoraRef:
    """A LoRA to apply: its file (on storage the worker can read) and the weight to use.
    The SHA-256 names it: the worker caches the file by it and checks it."""

    sha256: str
    source: str
    weight: float = 1.0
    name: str = ""  # for messages


@dataclass(frozen=True)
class ControlRef:
    """A ControlNet to condition a request on (SD 1.x / 2.x and SDXL, every mode).

    `image`: the user's image (PIL, RGB, exactly the request's size); the worker turns it
    into the conditioning image with `module` (gpu_workers.control: "canny" edges with the
    two thresholds, or "none": the image is the conditioning already). `model_source`: a
    Hub id or local diffusers folder of a ControlNetModel. It acts with `conditioning_scale`
    (A1111's "Weight") from `guidance_start` to `guidance_end`, fractions of the steps run
    (A1111's "Guidance Start/End"). With `model_source` "" the request's FLUX.1 Depth or
    Canny [dev] model reads the conditioning image itself, with no scale or span."""

    model_source: str
    image: object
    conditioning_scale: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    module: str = "canny"
    low_threshold: int = 100
    high_threshold: int = 200
    name: str = ""  # the library's name, for messages and the infotext


@dataclass(frozen=True)
class EmbeddingRef:
    """A textual-inversion embedding: its `.safetensors` file (on storage the worker can
    read, checked against its SHA-256) and the word that calls it up in a prompt."""

    sha256: str
    source: str
    name: str


# diffusers' and A1111's range for the IP-Adapter scale ("Weight").
MAX_IP_ADAPTER_SCALE = 2.0


@dataclass(frozen=True)
class IPAdapterRef:
    """An IP-Adapter image prompt (SD 1.x / 2.x, SDXL and FLUX.1).

    `model_source`: the adapter's weights, a local `.safetensors` file or a folder holding
    one: `image_proj.*` and `ip_adapter.*` tensors (diffusers' load_ip_adapter layout) for SD
    and SDXL, XLabs' layout (`ip_adapter_proj_model.*`, `double_blocks.N.processor.*`) for
    FLUX.1; its CLIP image encoder is the `image_encoder` folder next to the file. `image`: the
    user's image (PIL, RGB, any size: the encoder's processor resizes it). `scale`: how
    strongly the image steers the result (A1111's "Weight"; 0 leaves the text alone)."""

    model_source: str
    image: object
    scale: float = 1.0
    name: str = ""  # the library's name, for messages


@dataclass(frozen=True)
class GenerationResult:
    images: list  # list[PIL.Image.Image], RGB
    seed: int
    sampler: str  # A1111's "Sampler" field for the scheduler used, e.g. "DPM++ 2M"
    schedule_type: str | None  # A1111's "Schedule type", e.g. "Karras"; None: the default
    scheduler_class: str  # e.g. "DPMSolverMultistepScheduler"
    scheduler_config: dict  # the scheduler's full config, to reproduce the run
    elapsed_s: float  # time its batch ran, from start to decoded images (queue wait excluded)
    batch_size: int = 1  # requests that ran together with this one, itself included
    variation_seed: int = 0  # the request's, for the record (used only with a strength)


class GenerationCanceled(Exception):
    """The caller asked to stop; the run ended early and produced no image."""


class GenerationFailed(Exception):
    """The worker could not make the image; the message says why and what to try."""


class WorkerShuttingDown(GenerationFailed):
    """The worker stopped before this request started running; it can run elsewhere."""
