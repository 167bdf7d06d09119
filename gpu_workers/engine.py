"""One engine loop per device: it batches compatible requests and runs them together.

Celery threads `submit()` plain requests and wait on the returned future. The loop takes the
oldest queued request and the compatible ones queued with it (up to `max_batch`) and runs them
as one batch at once (continuous batching): compatible requests that arrive while it runs
join it at its next step, and each request leaves it as soon as its image is decoded, its
future completed. Rows of a batch may be at different steps (gpu_workers.denoise.RunningBatch).
Progress, previews, cancel and the time limit stay per request inside a batch.
"""

import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from PIL import Image

from gpu_workers.config import WorkerConfig
from gpu_workers.control import MAX_CONDITIONING_SCALE, MODULES, check_thresholds
from gpu_workers.denoise import Row, RunningBatch, warm_up_buckets
from gpu_workers.flow import FlowBatch, FlowRow, batch_refusal, warm_up_flow_buckets
from gpu_workers.loras import activate_loras
from gpu_workers.metrics import BATCH_SIZE, DENOISE_STEPS, WARMUP_SECONDS, gpu_memory_watch
from gpu_workers.pipelines import (
    FLOW_FAMILIES,
    cache_serving,
    load_controlnet,
    load_ip_adapter,
    load_pipeline,
    loaded_sources,
    model_family,
    pipeline_family,
    unet_qkv_fused,
)
from gpu_workers.previews import latent_preview
from gpu_workers.prompt_syntax import PromptTooComplex, prompt_schedule
from gpu_workers.requests import (
    MAX_IP_ADAPTER_SCALE,
    GenerationCanceled,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    WorkerShuttingDown,
)
from gpu_workers.samplers import SAMPLERS, sampler_of

logger = logging.getLogger(__name__)

# CLIP ViT-L has 12 layers; skipping more leaves too little of the prompt's meaning.
MAX_CLIP_SKIP = 12


@dataclass(frozen=True)
class BatchKey:
    """Requests with equal keys make the same model call, so they can share a batch, joining
    it while it runs. Per row (gpu_workers.denoise.RunningBatch): prompts, seeds, guidance,
    step counts, samplers, strengths, clip skip, hires passes, ControlNet images, scales
    and spans, IP-Adapter image prompts."""

    model_source: str
    mode: str
    width: int
    height: int
    adapters: tuple = ()  # (LoRA SHA-256, weight) pairs: set_adapters applies to a batch
    # SD (1.x, 2.x) or SDXL, never mixed in a batch: their prompts and latents differ in
    # kind. None: not known before the model loads (a Hub id not in the local cache).
    family: str | None = None
    # The ControlNet model (its conditioning images, scale and span are per row). None: no
    # ControlNet.
    control: str | None = None
    # IP-Adapter: (model source, scale), set in the UNet's attention for the whole batch;
    # the image prompts are per row. None: no adapter.
    ip_adapter: tuple | None = None
    # Textual-inversion embeddings: (SHA-256, name) pairs, loaded for the whole batch.
    embeddings: tuple = ()

    @classmethod
    def for_request(cls, request: GenerationRequest) -> "BatchKey":
        return cls(
            model_source=request.model_source,
            mode=request.mode,
            width=request.width,
            height=request.height,
            adapters=tuple((lora.sha256, lora.weight) for lora in request.loras),
            family=model_family(request.model_source),
            # A ControlRef without a model: FLUX.1 Depth or Canny reads the image itself.
            control=(request.control and request.control.model_source) or None,
            ip_adapter=None
            if request.ip_adapter is None
            else (request.ip_adapter.model_source, request.ip_adapter.scale),
            embeddings=tuple((used.sha256, used.name) for used in request.embeddings),
        )


class _PreviewCopy:
    """A step's denoised latent copied to the host for a preview. From a GPU the copy is
    queued behind the step's kernels and the loop does not wait for it: the preview goes
    out at a later step, once the copy is done, so previews never stall the device."""

    def __init__(self, step: int, latent: torch.Tensor):
        self.step = step
        self._done = None
        self.latent = latent
        if latent.device.type == "cuda":
            self.latent = torch.empty(latent.shape, dtype=latent.dtype, pin_memory=True)
            self.latent.copy_(latent, non_blocking=True)
            self._done = torch.cuda.Event()
            self._done.record()

    def ready(self) -> bool:
        return self._done is None or self._done.query()


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    key: BatchKey
    on_step: Callable[[int, int], None] | None
    on_preview: Callable[[int, Image.Image], None] | None
    should_cancel: Callable[[], bool] | None
    on_load: Callable[[str, str, int, int], None] | None = None
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)
    # Survives an out-of-memory retry, which replays steps already reported.
    steps_reported: int = 0
    last_preview: float = -math.inf
    started: float = 0.0  # when it joined a running batch (time.monotonic)
    rows_per_step: list[int] = field(default_factory=list)  # rows of each model call it shared
    preview_copy: "_PreviewCopy | None" = None  # a preview's latent on its way to the host

    @property
    def live(self) -> bool:
        return not self.future.done()

    def fail(self, error: BaseException) -> None:
        # Without its traceback: the frames it holds keep the batch's tensors (GPU memory)
        # alive for as long as the caller keeps the future. Tracebacks are logged instead.
        self.future.set_exception(error.with_traceback(None))


class Engine:
    """Owns one device: every request for it runs on this engine's single loop thread."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 25,
        job_time_limit_s: float | None = None,
        preview_interval_s: float = 0.25,
        continuous: bool = True,
    ):
        """`continuous`: compatible requests join a running batch at its next step and
        finished ones leave it at once; a batch starts without waiting for companions.
        False: batch-at-a-time, as before continuous batching (kept to compare them,
        gpu_workers.bench): a batch forms once, waiting up to `max_wait_ms` from its oldest
        request's arrival for companions, and takes no one in while it runs."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}.")
        self.config = config
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.job_time_limit_s = job_time_limit_s
        self.preview_interval_s = preview_interval_s  # per request; 0.25 s: about 4 per second
        self.continuous = continuous
        self._device = torch.device(config.device)
        gpu_memory_watch(self._device)
        cache_serving(config)
        self._queue: list[_Job] = []
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Held while a batch runs or a model warms up: preload runs on another thread.
        self._models_lock = threading.Lock()
        self._warmed = weakref.WeakSet()  # pipelines whose batch buckets were warmed up

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    def start(self) -> "Engine":
        with self._wakeup:
            if self._thread is not None:
                raise RuntimeError("This engine was already started.")
            self._thread = threading.Thread(
                target=self._loop, name=f"gpu-engine-{self.config.device}", daemon=True
            )
            self._thread.start()
        return self

    def submit(
        self,
        request: GenerationRequest,
        *,
        on_step: Callable[[int, int], None] | None = None,
        on_preview: Callable[[int, Image.Image], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        on_load: Callable[[str, str, int, int], None] | None = None,
    ) -> "Future[GenerationResult]":
        """Queue `request`; thread-safe. The future gives the result or raises
        GenerationCanceled, GenerationFailed or the error that stopped the batch.

        The callbacks run on the engine's thread after each step and should be quick:
        `on_step(step, total)` once per step run (total: `request.denoising_steps()`),
        `on_preview(step, image)` with a latent-resolution RGB image at most every
        `preview_interval_s`, `should_cancel()` after each step, and
        `on_load(kind, source, loaded, total)` before each model the batch needs that is not
        in memory yet (kind: "model", "controlnet" or "ip_adapter"; `loaded` of `total`
        done so far) and once more when all are (source ""). A future canceled while still
        queued never runs.
        """
        _check(request)
        job = _Job(
            request, BatchKey.for_request(request), on_step, on_preview, should_cancel, on_load
        )
        with self._wakeup:
            if self._stopping:
                raise WorkerShuttingDown("The worker is shutting down and takes no new jobs.")
            self._queue.append(job)
            self._wakeup.notify()
        return job.future

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs, fail the queued ones, let the running batch finish."""
        with self._wakeup:
            self._stopping = True
            queued, self._queue = self._queue, []
            self._wakeup.notify()
        for job in queued:
            if job.future.set_running_or_notify_cancel():
                job.fail(WorkerShuttingDown("The worker shut down before this job started."))
        if wait and self._thread is not None:
            self._thread.join()

    def preload(self, sources: Iterable[str]) -> dict[str, float]:
        """Load models before the first job asks for them (e.g. at worker start) and warm
        their batch buckets up (`warm_up`); returns each warm-up's seconds, by source."""
        seconds = {}
        for source in sources:
            with self._models_lock:
                seconds[source] = self.warm_up(load_pipeline(source, self.config), source)
        return seconds

    def warm_up(self, pipe, source: str) -> float:
        """With batch buckets (WorkerConfig.batch_buckets, on with STUDIO_COMPILE on CUDA):
        run a model call per bucket up to this engine's largest batch, so that compiling and
        recording CUDA graphs happen here, once per loaded model, not in a job; its seconds
        (also the studio_worker_warmup_seconds gauge). 0: nothing to warm up. FLUX.1's and
        SD 3.x's transformers alike (gpu_workers.flow.warm_up_flow_buckets)."""
        if not self.config.batch_buckets or pipe in self._warmed:
            return 0.0
        started = time.monotonic()
        flow = pipeline_family(pipe) in FLOW_FAMILIES
        if not flow:
            # As a batch without adapters runs; a batch with LoRAs (unfused) compiles its own.
            unet_qkv_fused(pipe, self._fuse_qkv)
        # Once, even if it fails: a warm-up that runs out of memory would again before every
        # batch. The buckets it did not reach compile in their first batch instead, whose
        # out-of-memory error splits it (_run_splitting_on_oom).
        self._warmed.add(pipe)
        try:
            if flow:
                sizes = warm_up_flow_buckets(
                    pipe,
                    self._device,
                    self.config.batch_buckets,
                    max_requests=self.max_batch,
                    cuda_graphs=self.config.cuda_graphs,
                )
            else:
                sizes = warm_up_buckets(
                    pipe,
                    self._device,
                    self.config.batch_buckets,
                    max_rows=2 * self.max_batch,  # a request with CFG is two UNet rows
                    decode_chunk=self.config.vae_decode_chunk,
                )
        except torch.OutOfMemoryError:
            logger.warning(
                "Out of memory warming %s up on %s for batches of %d requests: lower "
                "STUDIO_MAX_BATCH (or the largest of STUDIO_BATCH_BUCKETS) to fit the GPU",
                source,
                self._device,
                self.max_batch,
            )
            if self._device.type == "cuda":
                torch.cuda.empty_cache()
            return time.monotonic() - started
        seconds = time.monotonic() - started
        WARMUP_SECONDS.labels(device=str(self._device)).set(seconds)
        denoiser = "transformer" if flow else "unet"
        logger.info(
            "Warmed %s up on %s in %.1f s: %s batches of %s rows, VAE decodes of %s",
            source,
            self._device,
            seconds,
            denoiser,
            sizes[denoiser],
            sizes["vae_decoder"],
        )
        return seconds

    @property
    def _fuse_qkv(self) -> bool:
        # Fused attention is PyTorch's scaled-dot-product attention; eager stays as it is.
        return self.config.fuse_qkv and self.config.attention == "sdpa"

    def warm_models(self) -> list[str]:
        """Models loaded for this engine, least recently used first."""
        return loaded_sources(self.config)

    def _loop(self) -> None:
        while (jobs := self._next_batch()) is not None:
            if jobs:
                self._run(jobs)

    def _next_batch(self) -> list[_Job] | None:
        """The oldest queued job and up to max_batch - 1 compatible ones; None when stopping.
        Continuous, at once: companions that come later join the running batch instead."""
        with self._wakeup:
            while not self._queue and not self._stopping:
                self._wakeup.wait()
            if self._stopping:
                return None
            oldest = self._queue[0]
            if not self.continuous:
                # A job that already waited behind a running batch does not wait any longer.
                deadline = oldest.submitted + self.max_wait_s
                while not self._stopping and self._count(oldest.key) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wakeup.wait(remaining)
                if self._stopping:
                    return None
            return self._take(oldest.key, self.max_batch)

    def _take(self, key: BatchKey, most: int) -> list[_Job]:
        """Up to `most` queued jobs with `key`, oldest first, out of the queue; with the lock
        held. Once running, a future cannot be canceled any more; should_cancel takes over."""
        batch = [job for job in self._queue if job.key == key][:most]
        self._queue = [job for job in self._queue if job not in batch]
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _joining(self, key: BatchKey, free: int) -> list[_Job]:
        """Queued jobs that join a running batch with `key` at its next step. None while an
        older job needs another batch: this one then runs out, so a steady stream of
        compatible jobs cannot keep that one waiting."""
        if not self.continuous or free < 1:
            return []
        with self._wakeup:
            if self._stopping or (self._queue and self._queue[0].key != key):
                return []
            return self._take(key, free)

    def _count(self, key: BatchKey) -> int:
        return sum(job.key == key for job in self._queue)

    def _run(self, jobs: list[_Job]) -> None:
        with self._models_lock:
            self._run_locked(jobs)

    def _run_locked(self, jobs: list[_Job]) -> None:
        key = jobs[0].key
        needed = [key.model_source]
        needed += [key.control] if key.control is not None else []
        needed += [key.ip_adapter[0]] if key.ip_adapter is not None else []
        in_memory = set(loaded_sources(self.config))
        # Only loads take long enough to tell anyone about (seconds to minutes when cold).
        to_load = [source for source in needed if source not in in_memory]

        def loading(kind, source):
            if source in to_load:
                self._announce_load(jobs, kind, source, to_load.index(source), len(to_load))

        try:
            loading("model", key.model_source)
            pipe = load_pipeline(
                key.model_source, self.config, model_config=jobs[0].request.model_config
            )
            if pipeline_family(pipe) in FLOW_FAMILIES:
                refusal = batch_refusal(pipe, jobs[0].request)
                if refusal is not None:
                    raise GenerationFailed(refusal)
            self.warm_up(pipe, key.model_source)
            if pipeline_family(pipe) not in FLOW_FAMILIES:
                # LoRAs and IP-Adapters act on the separate projections.
                adapters = bool(key.adapters) or key.ip_adapter is not None
                unet_qkv_fused(pipe, self._fuse_qkv and not adapters)
            activate_loras(pipe, jobs[0].request.loras, self.config)
            models = {"controlnet": None, "ip_adapter": None}
            if key.control is not None:
                loading("controlnet", key.control)
                models["controlnet"] = load_controlnet(key.control, self.config)
            if key.ip_adapter is not None:
                loading("ip_adapter", key.ip_adapter[0])
                models["ip_adapter"] = load_ip_adapter(key.ip_adapter[0], self.config)
            if to_load:
                self._announce_load(jobs, "", "", len(to_load), len(to_load))
        except Exception as error:
            logger.exception("Could not prepare %s", jobs[0].key.model_source)
            for job in jobs:
                job.fail(error)
            return
        self._run_splitting_on_oom(pipe, jobs, models, joinable=True)

    @staticmethod
    def _announce_load(jobs: list[_Job], kind: str, source: str, loaded: int, total: int):
        for job in jobs:
            if job.on_load is not None:
                job.on_load(kind, source, loaded, total)

    def _run_splitting_on_oom(self, pipe, jobs: list[_Job], models: dict, *, joinable) -> None:
        """`jobs` grows by those that join the batch while it runs (`joinable`)."""
        try:
            self._run_batch(pipe, jobs, models, joinable=joinable)
            return
        except torch.OutOfMemoryError:
            logger.warning("Out of memory in a batch of %d on %s", len(jobs), self._device)
        except Exception as error:
            logger.exception("A batch of %d failed on %s", len(jobs), self._device)
            for job in jobs:
                if job.live:
                    job.fail(error)
            return
        # Retried here, after the except block: its traceback held the failed batch's tensors.
        # The live rows start again, in halves that take no one in.
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
        live = [job for job in jobs if job.live]
        if len(live) > 1:
            half = (len(live) + 1) // 2
            self._run_splitting_on_oom(pipe, live[:half], models, joinable=False)
            self._run_splitting_on_oom(pipe, live[half:], models, joinable=False)
        elif live:
            live[0].fail(GenerationFailed(_out_of_memory_reason(live[0].request, self._device)))

    def _run_batch(self, pipe, jobs: list[_Job], models: dict, *, joinable: bool) -> None:
        """`models`: the ControlNet and IP-Adapter the batch's key names, loaded (or None).
        Each step: the jobs that came join, one model call for every row, callbacks, and the
        rows that finished are decoded and delivered."""
        key = jobs[0].key
        device = str(self._device)
        ip_adapter_scale = 1.0 if key.ip_adapter is None else key.ip_adapter[1]
        if pipeline_family(pipe) in FLOW_FAMILIES:
            batch = FlowBatch(
                pipe,
                self._device,
                controlnet=models["controlnet"],
                ip_adapter=models["ip_adapter"],
                ip_adapter_scale=ip_adapter_scale,
                buckets=self.config.batch_buckets,
                cuda_graphs=self.config.cuda_graphs,
            )
        else:
            batch = RunningBatch(
                pipe,
                self._device,
                controlnet=models["controlnet"],
                ip_adapter=models["ip_adapter"],
                ip_adapter_scale=ip_adapter_scale,
                embeddings=jobs[0].request.embeddings,
                buckets=self.config.batch_buckets,
                decode_chunk=self.config.vae_decode_chunk,
                cuda_graphs=self.config.cuda_graphs,
            )
        running: dict[Row | FlowRow, _Job] = {}
        joining = list(jobs)
        # Finished rows whose images may still be on their way from the device: from a GPU
        # delivered once the next step is queued (the host makes the images while the device
        # runs it), and the last ones once the batch's adapters are out.
        decoding = None
        with batch:
            while joining or running:
                for job in joining:
                    self._join(batch, job, running)
                if not running:
                    break
                try:
                    ended = batch.step()
                finally:
                    # Queued before the step: delivered even if it failed, so that an
                    # out-of-memory retry does not make them again.
                    if decoding is not None:
                        self._deliver_decoded(*decoding)
                        decoding = None
                rows = len(running)
                BATCH_SIZE.labels(device=device).observe(rows)
                DENOISE_STEPS.labels(device=device).inc(len(ended))
                for job in running.values():
                    job.rows_per_step.append(rows)
                for row in ended:
                    job = running[row]
                    self._step_ended(job, row.step, time.monotonic() - job.started, row.denoised)
                for row, job in list(running.items()):
                    if not job.live:  # canceled, past its time limit or a callback failed
                        batch.remove(row)
                        del running[row]
                finished = [row for row in ended if row in running and row.done]
                if finished:
                    images = batch.decode(finished)
                    decoding = ([(running.pop(row), row) for row in finished], images)
                    for row in finished:
                        batch.remove(row)
                joining = self._joining(key, self.max_batch - len(running)) if joinable else []
                jobs.extend(joining)
                if not (running or joining):
                    break
                if decoding is not None and _ready(decoding[1]):  # from a CPU: at once
                    self._deliver_decoded(*decoding)
                    decoding = None
        if decoding is not None:
            self._deliver_decoded(*decoding)

    def _deliver_decoded(self, finished: list[tuple[_Job, Row | FlowRow]], decoded) -> None:
        """`decoded`: the batch's decode of the finished rows (DecodedImages; a FlowBatch's
        is a list of images)."""
        images = decoded if isinstance(decoded, list) else decoded.images()
        for (job, row), image in zip(finished, images, strict=True):
            self._deliver(job, row, image)

    def _join(self, batch: RunningBatch | FlowBatch, job: _Job, running: dict) -> None:
        # Counted afresh if an out-of-memory retry starts it again.
        job.started, job.rows_per_step = time.monotonic(), []
        try:
            running[batch.add(job.request)] = job
        except torch.OutOfMemoryError:
            raise
        except Exception as error:
            # A request that cannot start (a model it does not fit) fails alone.
            logger.exception("A job could not start on %s", self._device)
            job.fail(error)

    @staticmethod
    def _deliver(job: _Job, row: Row | FlowRow, image: Image.Image) -> None:
        sampler = sampler_of(row.scheduler, job.request.sampler)
        job.future.set_result(
            GenerationResult(
                images=[image],
                seed=job.request.seed,
                variation_seed=job.request.variation_seed,
                sampler=sampler.infotext_name,
                schedule_type=sampler.schedule_type,
                scheduler_class=type(row.scheduler).__name__,
                scheduler_config=json.loads(row.scheduler.to_json_string()),
                elapsed_s=time.monotonic() - job.started,
                # The rows it shared its model calls with, on average: its elapsed time
                # over this is its share of the device.
                batch_size=max(1, round(sum(job.rows_per_step) / len(job.rows_per_step))),
            )
        )

    def _step_ended(self, job: _Job, step: int, elapsed_s: float, denoised: torch.Tensor) -> None:
        """Time limit, preview, progress and cancel for one request, in that order."""
        total = job.request.denoising_steps()
        try:
            if self.job_time_limit_s is not None and elapsed_s > self.job_time_limit_s:
                job.fail(
                    GenerationFailed(
                        f"Stopped at step {step} of {total}: the job ran longer than this "
                        f"worker's limit of {self.job_time_limit_s:g} s. Try fewer steps or "
                        "a smaller size."
                    )
                )
                return
            now = time.monotonic()
            # A preview comes just before the progress of its step (from a GPU: of a later
            # step, _PreviewCopy), so a listener can send both as one event.
            copied = job.preview_copy
            if copied is not None and copied.ready():
                job.preview_copy = None
                job.on_preview(copied.step, latent_preview(copied.latent, job.key.family))
            # No preview at the last step: the image itself follows at once.
            # No denoised latents: no cheap preview for the family (FLUX.1, SD 3.x) yet.
            previewable = job.on_preview is not None and denoised is not None
            if previewable and step < total and step > job.steps_reported:
                if now - job.last_preview >= self.preview_interval_s and job.preview_copy is None:
                    job.last_preview = now
                    copy = _PreviewCopy(step, denoised[0])
                    if copy.ready():
                        job.on_preview(step, latent_preview(copy.latent, job.key.family))
                    else:
                        job.preview_copy = copy
            if step > job.steps_reported:
                job.steps_reported = step
                if job.on_step is not None:
                    job.on_step(step, total)
            if job.should_cancel is not None and job.should_cancel():
                job.fail(GenerationCanceled(f"Canceled after step {step} of {total}."))
        except Exception as error:
            # A broken callback ends its own job, never its batch-mates'.
            logger.exception("A callback of a job failed at step %d", step)
            job.fail(error)


def _ready(decoded) -> bool:
    """Whether a decode's images are on the host (a FlowBatch's list of images always is)."""
    return isinstance(decoded, list) or decoded.ready()


def _check(request: GenerationRequest) -> None:
    """Refuse at submit what would otherwise fail a whole batch later."""
    if request.width <= 0 or request.height <= 0 or request.width % 8 or request.height % 8:
        raise ValueError(
            f"width and height must be positive multiples of 8, not {request.width}x"
            f"{request.height}."
        )
    if request.steps < 1:
        raise ValueError(f"steps must be at least 1, not {request.steps}.")
    if not 1 <= request.clip_skip <= MAX_CLIP_SKIP:
        raise ValueError(f"clip_skip must be 1 to {MAX_CLIP_SKIP}, not {request.clip_skip}.")
    if request.first_pass_steps is not None and request.first_pass_steps < 1:
        raise ValueError(f"first_pass_steps must be at least 1, not {request.first_pass_steps}.")
    for field_name in ("prompt", "negative_prompt"):
        try:
            prompt_schedule(
                getattr(request, field_name),
                request.steps,
                first_pass_steps=request.first_pass_steps,
            )
        except PromptTooComplex as error:
            raise ValueError(f"{field_name}: {error}") from error
    if request.sampler is not None and request.sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {request.sampler!r}; use one of {', '.join(SAMPLERS)}.")
    if not 0 <= request.variation_strength <= 1:
        raise ValueError(f"variation_strength must be 0 to 1, not {request.variation_strength}.")
    if request.variation_strength and request.init_image is not None:
        raise ValueError("Variation seeds apply to txt2img only.")
    if request.control is not None:
        _check_control(request)
    if request.ip_adapter is not None:
        _check_ip_adapter(request)
    if request.mask_image is not None and request.init_image is None:
        raise ValueError("mask_image needs an init_image to inpaint.")
    if request.init_image is not None:
        size = getattr(request.init_image, "size", None)
        if size != (request.width, request.height):
            raise ValueError(
                f"init_image must be a {request.width}x{request.height} image, not {size}."
            )
        if not 0 < request.strength <= 1:
            raise ValueError(f"strength must be above 0 and at most 1, not {request.strength}.")
        if request.mask_image is not None and getattr(request.mask_image, "size", None) != size:
            raise ValueError(
                f"mask_image must be the init_image's size, {size}, not "
                f"{getattr(request.mask_image, 'size', None)}."
            )
        if request.denoising_steps() < 1:
            raise ValueError(
                f"strength {request.strength:g} of {request.steps} steps runs no step at all; "
                "raise the strength or the steps."
            )


def _check_control(request: GenerationRequest) -> None:
    control = request.control
    size = getattr(control.image, "size", None)
    if size != (request.width, request.height):
        raise ValueError(
            f"The ControlNet image must be a {request.width}x{request.height} image, not {size}."
        )
    if not 0 <= control.conditioning_scale <= MAX_CONDITIONING_SCALE:
        raise ValueError(
            f"The ControlNet conditioning scale must be 0 to {MAX_CONDITIONING_SCALE:g}, not "
            f"{control.conditioning_scale}."
        )
    if not 0 <= control.guidance_start < control.guidance_end <= 1:
        raise ValueError(
            f"ControlNet guidance start and end must satisfy 0 <= start < end <= 1, not "
            f"{control.guidance_start} and {control.guidance_end}."
        )
    if control.module not in MODULES:
        raise ValueError(
            f"Unknown ControlNet preprocessor {control.module!r}; use one of {', '.join(MODULES)}."
        )
    check_thresholds(control.low_threshold, control.high_threshold)


def _check_ip_adapter(request: GenerationRequest) -> None:
    ip_adapter = request.ip_adapter
    if getattr(ip_adapter.image, "size", None) is None:
        raise ValueError("The IP-Adapter needs an image (PIL) as its image prompt.")
    if not 0 <= ip_adapter.scale <= MAX_IP_ADAPTER_SCALE:
        raise ValueError(
            f"The IP-Adapter scale must be 0 to {MAX_IP_ADAPTER_SCALE:g}, not {ip_adapter.scale}."
        )


def _out_of_memory_reason(request: GenerationRequest, device: torch.device) -> str:
    return (
        f"Out of memory on {device} making one {request.width}x{request.height} image in "
        f"{request.steps} steps, even alone (its batch was split and retried first). Try a "
        "smaller size; the number of steps barely changes memory. On the worker, "
        "STUDIO_VAE_TILING=1 or STUDIO_CPU_OFFLOAD=model need less GPU memory."
    )
