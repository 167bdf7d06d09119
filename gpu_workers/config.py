"""How a worker runs its models, read from the environment.

Every option is explicit here and applied in one place when a pipeline loads
(`gpu_workers.pipelines._apply_options`; the fp8 transformer's storage just before, so
that the model cache counts it).
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# "sdpa": PyTorch's fused scaled-dot-product attention (flash / memory-efficient kernels);
# "eager": diffusers' plain matmul-softmax-matmul attention, a slow reference for debugging.
ATTENTION_BACKENDS = ("sdpa", "eager")
# "model": one whole model on the GPU at a time; "sequential": one layer at a time (slowest,
# smallest). Both keep the weights in CPU memory, for GPUs too small to hold the pipeline.
CPU_OFFLOAD_MODES = ("none", "model", "sequential")
# torch.compile's modes. "reduce-overhead" replays CUDA graphs, which need fixed shapes: the
# model calls' batch sizes are padded to `batch_buckets` with it.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# UNet rows per model call with buckets on: a call is padded to the next size up, so a compiled
# model sees only these batch sizes (a call of more rows is split into calls of the largest).
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class WorkerConfig:
    device: str
    dtype: torch.dtype
    # FLUX.1's and SD 3.x's dtype where it differs from `dtype` (STUDIO_DTYPE=auto on a GPU
    # with bf16: their transformers and T5 overflow fp16); None: `dtype`.
    flow_dtype: torch.dtype | None = None
    # Keep the flow transformer's layer weights in fp8, each cast up to the compute dtype
    # only while its layer runs: half the bf16 weight memory, slightly different images.
    fp8_transformer: bool = False
    attention: str = "sdpa"
    # The defaults here are the CPU's; from_env turns channels_last, fuse_qkv and (with
    # compile) batch_buckets on for CUDA.
    channels_last: bool = False
    # One matrix product for attention's query, key and value (the UNet's while no LoRA is
    # active, the VAE's always): fewer, larger kernels on a GPU.
    fuse_qkv: bool = False
    compile: bool = False  # torch.compile the UNet and VAE decoder: slow warm-up, faster after
    compile_mode: str = "reduce-overhead"
    # Pad each model call's rows to the next of these sizes (copies of a real row, whose
    # outputs are dropped), so a compiled model never recompiles for a new batch size. ():
    # no padding.
    batch_buckets: tuple[int, ...] = ()
    # Finished images decoded per VAE call; 1 on a CPU, where a batch's VAE attention rounds
    # otherwise than one image's (gpu_workers.batch_invariance).
    vae_decode_chunk: int = 1
    vae_slicing: bool = True  # decode a batch one image at a time: flat memory, same pixels
    vae_tiling: bool = False  # decode large images in overlapping tiles: less memory, seams
    cpu_offload: str = "none"
    # Parameter bytes the model cache may keep on this device; None: 3/4 of the GPU's memory
    # (the rest is for activations), no limit on a CPU. With cpu_offload it bounds what the
    # offload keeps on the GPU at once, not the whole weights (pipelines.pipeline_cache_bytes).
    model_cache_bytes: int | None = None
    # With cpu_offload: parameter bytes the model cache may keep in host memory, where the
    # offloaded weights live; None: half the machine's physical memory.
    model_cache_host_bytes: int | None = None
    # LoRA files are copied here, named by their SHA-256, before they are loaded.
    lora_cache_dir: str = str(Path.home() / ".cache" / "studio" / "loras")
    # Adapters kept loaded in a pipeline, so that switching between them is cheap.
    max_loaded_loras: int = 8
    # With `compile`: LoRAs up to this rank are hotswapped into the compiled UNet without a
    # recompile (smaller ones are padded with zeros to it; larger ones reload, recompiling).
    max_lora_rank: int = 128

    def model_dtype(self, *, flow: bool) -> torch.dtype:
        """The dtype models load in: a flow family's (FLUX.1, SD 3.x) or the others'."""
        return (self.flow_dtype or self.dtype) if flow else self.dtype

    @property
    def cuda_graphs(self) -> bool:
        """Whether the compiled models replay CUDA graphs (torch.compile's "reduce-overhead")."""
        return self.compile and self.compile_mode == "reduce-overhead" and self.device != "cpu"

    @classmethod
    def from_env(cls) -> "WorkerConfig":
        """Read the STUDIO_* variables below; unset ones take the defaults above.

        STUDIO_DEVICE: auto|cpu|cuda|cuda:N; STUDIO_DTYPE: auto|fp16|bf16|fp32 (auto: see
        choose_dtypes); STUDIO_FP8_TRANSFORMER: 1|0;
        STUDIO_ATTENTION: sdpa|eager; STUDIO_CHANNELS_LAST, STUDIO_FUSE_QKV (both on by
        default on CUDA), STUDIO_COMPILE, STUDIO_VAE_SLICING (default on a CPU only: on CUDA
        STUDIO_VAE_DECODE_CHUNK bounds the decode's memory), STUDIO_VAE_TILING: 1|0;
        STUDIO_COMPILE_MODE: default|reduce-overhead|max-autotune|max-autotune-no-cudagraphs;
        STUDIO_BATCH_BUCKETS: ascending UNet row counts such as 1,2,4,8,16,32, or none (the
        default, but for STUDIO_COMPILE on CUDA: 1,2,4,8,16,32); STUDIO_VAE_DECODE_CHUNK: an
        integer (default 1 on a CPU, 8 on CUDA); STUDIO_CPU_OFFLOAD: none|model|sequential;
        STUDIO_MODEL_CACHE_BYTES, STUDIO_MODEL_CACHE_HOST_BYTES (only with offload): integers;
        STUDIO_LORA_CACHE_DIR: a folder;
        STUDIO_MAX_LOADED_LORAS, STUDIO_MAX_LORA_RANK: integers.
        """
        device = os.environ.get("STUDIO_DEVICE", "auto").strip().lower()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif not (device in ("cpu", "cuda") or _is_cuda_index(device)):
            raise ValueError(
                f"STUDIO_DEVICE={device!r} is not supported; use auto, cpu, cuda or cuda:N."
            )
        if device.startswith("cuda") and not torch.cuda.is_available():
            # Fail at startup, not in the first job.
            raise ValueError(f"STUDIO_DEVICE={device!r} but torch sees no CUDA device here.")

        dtype, flow_dtype = choose_dtypes(
            device, os.environ.get("STUDIO_DTYPE", "auto").strip().lower()
        )

        cpu_offload = _choice("STUDIO_CPU_OFFLOAD", CPU_OFFLOAD_MODES, default="none")
        if cpu_offload != "none" and device == "cpu":
            raise ValueError(
                f"STUDIO_CPU_OFFLOAD={cpu_offload!r} moves weights between CPU and GPU; "
                "it needs STUDIO_DEVICE=cuda."
            )
        model_cache_host_bytes = _bytes("STUDIO_MODEL_CACHE_HOST_BYTES")
        if model_cache_host_bytes is not None and cpu_offload == "none":
            # Without offload the weights live on the device, within STUDIO_MODEL_CACHE_BYTES.
            raise ValueError(
                "STUDIO_MODEL_CACHE_HOST_BYTES bounds the host memory that offloaded weights "
                "fill; it needs STUDIO_CPU_OFFLOAD=model or sequential."
            )
        compile_models = _flag("STUDIO_COMPILE", default=False)
        fp8_transformer = _flag("STUDIO_FP8_TRANSFORMER", default=False)
        if fp8_transformer and compile_models:
            # Layerwise casting makes each layer's bf16 weights anew in every call, which
            # torch.compile's whole-graph capture refuses.
            raise ValueError(
                "STUDIO_FP8_TRANSFORMER=1 does not work with STUDIO_COMPILE=1; turn one off."
            )
        defaults = device_defaults(device, compile=compile_models)
        batch_buckets = _buckets("STUDIO_BATCH_BUCKETS", default=defaults["batch_buckets"])
        vae_decode_chunk = _count("STUDIO_VAE_DECODE_CHUNK", default=defaults["vae_decode_chunk"])
        if batch_buckets and vae_decode_chunk > batch_buckets[-1]:
            # A decode chunk is padded to a bucket like a model call: none would hold it.
            raise ValueError(
                f"STUDIO_VAE_DECODE_CHUNK={vae_decode_chunk} is larger than the largest of "
                f"STUDIO_BATCH_BUCKETS ({batch_buckets[-1]}); make it at most that."
            )
        return cls(
            device=device,
            dtype=dtype,
            flow_dtype=flow_dtype,
            fp8_transformer=fp8_transformer,
            attention=_choice("STUDIO_ATTENTION", ATTENTION_BACKENDS, default="sdpa"),
            channels_last=_flag("STUDIO_CHANNELS_LAST", default=defaults["channels_last"]),
            fuse_qkv=_flag("STUDIO_FUSE_QKV", default=defaults["fuse_qkv"]),
            compile=compile_models,
            compile_mode=_choice("STUDIO_COMPILE_MODE", COMPILE_MODES, default="reduce-overhead"),
            batch_buckets=batch_buckets,
            vae_decode_chunk=vae_decode_chunk,
            vae_slicing=_flag("STUDIO_VAE_SLICING", default=defaults["vae_slicing"]),
            vae_tiling=_flag("STUDIO_VAE_TILING", default=False),
            cpu_offload=cpu_offload,
            model_cache_bytes=_bytes("STUDIO_MODEL_CACHE_BYTES"),
            model_cache_host_bytes=model_cache_host_bytes,
            lora_cache_dir=os.environ.get("STUDIO_LORA_CACHE_DIR", "").strip()
            or cls.lora_cache_dir,
            max_loaded_loras=_count("STUDIO_MAX_LOADED_LORAS", default=cls.max_loaded_loras),
            max_lora_rank=_count("STUDIO_MAX_LORA_RANK", default=cls.max_lora_rank),
        )


def choose_dtypes(device: str, dtype_name: str) -> tuple[torch.dtype, torch.dtype | None]:
    """STUDIO_DTYPE's dtype for `device`, and the flow families' where it differs
    (WorkerConfig.dtype and .flow_dtype).

    An explicit fp16, bf16 or fp32 holds for every family. auto: fp32 on a CPU (slow or
    inexact in half precision); on CUDA fp16 for SD and SDXL and bf16 for FLUX.1 and SD 3.x,
    whose transformers and T5 text encoder overflow fp16 (diffusers recommends bf16 for
    them), or fp16 with a warning on a GPU without bf16.
    """
    if dtype_name in DTYPES:
        return DTYPES[dtype_name], None
    if dtype_name != "auto":
        raise ValueError(
            f"STUDIO_DTYPE={dtype_name!r} is not supported; use auto, {', '.join(DTYPES)}."
        )
    if not device.startswith("cuda"):
        return torch.float32, None
    if torch.cuda.is_bf16_supported():
        return torch.float16, torch.bfloat16
    logger.warning(
        "%s has no bf16: FLUX.1 and SD 3.x models run in fp16, where their activations may "
        "overflow (black or noisy images).",
        device,
    )
    return torch.float16, None


def device_defaults(device: str, *, compile: bool) -> dict:
    """The options whose default depends on the device (WorkerConfig's own are the CPU's):
    on CUDA channels_last, fused QKV, decoding in chunks of 8 (which bounds the decode's
    memory instead of VAE slicing) and, compiled, batch buckets."""
    cuda = device.startswith("cuda")
    return {
        "channels_last": cuda,
        "fuse_qkv": cuda,
        "batch_buckets": DEFAULT_BATCH_BUCKETS if compile and cuda else (),
        "vae_decode_chunk": 8 if cuda else 1,
        "vae_slicing": not cuda,
    }


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdecimal()


def _choice(name: str, choices: tuple[str, ...], *, default: str) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use {', '.join(choices)}.")
    return value


def _flag(name: str, *, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a switch; use 1 or 0.")


def _bytes(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdecimal() or int(value) == 0:
        raise ValueError(f"{name}={value!r} is not a positive number of bytes, e.g. 8000000000.")
    return int(value)


def _count(name: str, *, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdecimal() or int(value) == 0:
        raise ValueError(f"{name}={value!r} is not a positive whole number, e.g. {default}.")
    return int(value)


def _buckets(name: str, *, default: tuple[int, ...]) -> tuple[int, ...]:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value == "none":
        return ()
    sizes = [size.strip() for size in value.split(",")]
    if not all(size.isdecimal() and int(size) > 0 for size in sizes):
        raise ValueError(
            f"{name}={value!r} is not a list of positive whole numbers, e.g. 1,2,4,8,16,32, "
            "or none."
        )
    buckets = tuple(int(size) for size in sizes)
    if list(buckets) != sorted(set(buckets)):
        raise ValueError(f"{name}={value!r} must list its sizes in ascending order, each once.")
    return buckets
