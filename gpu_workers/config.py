"""How a worker runs its models, read from the environment.

Every option is explicit here and applied in one place when a pipeline loads
(`gpu_workers.pipelines._apply_options`).
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# "sdpa": PyTorch's fused scaled-dot-product attention (flash / memory-efficient kernels);
# "eager": diffusers' plain matmul-softmax-matmul attention, a slow reference for debugging.
ATTENTION_BACKENDS = ("sdpa", "eager")
# "model": one whole model on the GPU at a time; "sequential": one layer at a time (slowest,
# smallest). Both keep the weights in CPU memory, for GPUs too small to hold the pipeline.
CPU_OFFLOAD_MODES = ("none", "model", "sequential")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class WorkerConfig:
    device: str
    dtype: torch.dtype
    attention: str = "sdpa"
    channels_last: bool = False
    compile: bool = False  # torch.compile the UNet: slow first batches, faster after
    vae_slicing: bool = True  # decode a batch one image at a time: flat memory, same pixels
    vae_tiling: bool = False  # decode large images in overlapping tiles: less memory, seams
    cpu_offload: str = "none"
    # Parameter bytes the model cache may keep on this device; None: 3/4 of the GPU's memory
    # (the rest is for activations), no limit on a CPU.
    model_cache_bytes: int | None = None
    # LoRA files are copied here, named by their SHA-256, before they are loaded.
    lora_cache_dir: str = str(Path.home() / ".cache" / "studio" / "loras")
    # Adapters kept loaded in a pipeline, so that switching between them is cheap.
    max_loaded_loras: int = 8
    # With `compile`: LoRAs up to this rank are hotswapped into the compiled UNet without a
    # recompile (smaller ones are padded with zeros to it; larger ones reload, recompiling).
    max_lora_rank: int = 128

    @classmethod
    def from_env(cls) -> "WorkerConfig":
        """Read the STUDIO_* variables below; unset ones take the defaults above.

        STUDIO_DEVICE: auto|cpu|cuda|cuda:N; STUDIO_DTYPE: auto|fp16|bf16|fp32;
        STUDIO_ATTENTION: sdpa|eager; STUDIO_CHANNELS_LAST, STUDIO_COMPILE, STUDIO_VAE_SLICING,
        STUDIO_VAE_TILING: 1|0; STUDIO_CPU_OFFLOAD: none|model|sequential;
        STUDIO_MODEL_CACHE_BYTES: an integer; STUDIO_LORA_CACHE_DIR: a folder;
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

        dtype_name = os.environ.get("STUDIO_DTYPE", "auto").strip().lower()
        if dtype_name == "auto":
            # Half precision is the norm on GPUs; CPUs are slow (or inexact) in fp16.
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
        elif dtype_name in DTYPES:
            dtype = DTYPES[dtype_name]
        else:
            raise ValueError(
                f"STUDIO_DTYPE={dtype_name!r} is not supported; use auto, {', '.join(DTYPES)}."
            )

        cpu_offload = _choice("STUDIO_CPU_OFFLOAD", CPU_OFFLOAD_MODES, default="none")
        if cpu_offload != "none" and device == "cpu":
            raise ValueError(
                f"STUDIO_CPU_OFFLOAD={cpu_offload!r} moves weights between CPU and GPU; "
                "it needs STUDIO_DEVICE=cuda."
            )
        return cls(
            device=device,
            dtype=dtype,
            attention=_choice("STUDIO_ATTENTION", ATTENTION_BACKENDS, default="sdpa"),
            channels_last=_flag("STUDIO_CHANNELS_LAST", default=False),
            compile=_flag("STUDIO_COMPILE", default=False),
            vae_slicing=_flag("STUDIO_VAE_SLICING", default=True),
            vae_tiling=_flag("STUDIO_VAE_TILING", default=False),
            cpu_offload=cpu_offload,
            model_cache_bytes=_bytes("STUDIO_MODEL_CACHE_BYTES"),
            lora_cache_dir=os.environ.get("STUDIO_LORA_CACHE_DIR", "").strip()
            or cls.lora_cache_dir,
            max_loaded_loras=_count("STUDIO_MAX_LOADED_LORAS", default=cls.max_loaded_loras),
            max_lora_rank=_count("STUDIO_MAX_LORA_RANK", default=cls.max_lora_rank),
        )


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
