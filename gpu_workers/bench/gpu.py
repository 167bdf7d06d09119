"""GPU benchmark: plain diffusers one job at a time vs the engine, at real model sizes.

SD1.5-architecture 512x512, 25 steps, and SDXL-architecture 1024x1024, 30 steps, both CFG
7.5 with Euler, random weights at real size built from the released models' configs
(written out below: nothing is downloaded; speed does not depend on weight values). For
each: plain diffusers one job at a time (fp16, SDPA: what a peer UI does) and the engine
under 1, 4 and 16 concurrent jobs, each without and with torch.compile; images/s, p50/p95
latency, and the physical floor: the FLOPs of one image (text encoders, every UNet step,
VAE decode; counted with torch.utils.flop_counter) divided by the device's measured rate
on a big matmul.

    python -m gpu_workers.bench.gpu --write docs/BENCHMARKS.md       # on a GPU
    python -m gpu_workers.bench.gpu --device cpu --tiny              # a quick check anywhere

`--tiny` swaps in tiny configs of the same architectures, 64x64 and 4 steps; `--quick` runs
SD1.5 only at fewer jobs (eager and compiled on a GPU). Each compile setting ends with an
arrival process (`--arrivals` jobs at Poisson arrival times): continuous batching vs
batch-at-a-time. The JSON is written after every run. On a CPU
torch.compile is off unless asked for (`--compile off on`): compiling takes minutes there.
Each architecture's section of the markdown is written as soon as it is measured, so a run
cut short keeps what it measured; `--arch sd15` and `--arch sdxl` can run separately.

`--arch flux` (FLUX.1 [dev]-architecture, 1024x1024, 28 steps, distilled guidance 3.5, one
transformer row per job, T5 v1.1 XXL) and `--arch sd35` (SD 3.5 Large-architecture,
1024x1024, 28 steps, CFG 3.5) run one per process (about 35 and 28 GB of weights in 16-bit,
saved to the scratch folder too); with `--tiny` they are the tests' tiny models.
"""

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
)

from gpu_workers.bench.measure import (
    count_flops,
    machine_info,
    make_requests,
    matmul_flops_per_s,
    plain_call_kwargs,
    quiet_libraries,
    run_arrivals,
    run_engine,
    run_plain,
)
from gpu_workers.bench.report import machine_line, write_section
from gpu_workers.config import DTYPES, WorkerConfig, device_defaults
from gpu_workers.engine import Engine
from gpu_workers.tiny_models import (
    build_tiny_flux,
    build_tiny_sd3,
    tiny_clip_tokenizer,
    tiny_t5_tokenizer,
)

GUIDANCE = 7.5
MAX_WAIT_MS = 25  # the worker's default (STUDIO_MAX_WAIT_MS)
WARMUP_STEPS = 2  # warm-ups compile and pick kernels per shape; the step count is irrelevant
# The arrival process's default rate, as a fraction of the best images/s the engine made
# with every client busy: a service that keeps up, with batches running as jobs arrive.
ARRIVAL_LOAD = 0.6
ARRIVAL_SEED = 16
# --quick: SD1.5 only, eager and compiled, fewer jobs: a few minutes on one H100.
QUICK = {"arch": ["sd15"], "concurrency": [1, 8], "jobs": 4, "rounds": 1, "arrivals": 16}

# The released models' configs (runwayml/stable-diffusion-v1-5,
# stabilityai/stable-diffusion-xl-base-1.0), as far as they shape the compute.
SD15_UNET = {
    "sample_size": 64,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
}
SDXL_UNET = {
    "sample_size": 128,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "use_linear_projection": True,
    "cross_attention_dim": 2048,  # CLIP ViT-L's 768 + OpenCLIP bigG's 1280
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # 6 size/crop ids x 256 + pooled 1280
}
VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "norm_num_groups": 32}
CLIP_VIT_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
OPENCLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}

# Tiny configs of the same architectures: two resolutions, 32..64 channels.
TINY_SD15_UNET = {
    "sample_size": 8,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "cross_attention_dim": 32,
}
TINY_SDXL_UNET = {
    "sample_size": 8,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "transformer_layers_per_block": (1, 2),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "cross_attention_dim": 64,  # 32 + 32, the two tiny text encoders
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 80,  # 6 x 8 + pooled 32
}
TINY_VAE = {"block_out_channels": (8, 16, 16, 16), "layers_per_block": 1, "norm_num_groups": 8}
TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
}
CLIP_VOCAB_SIZE = 49408  # CLIP's; the tiny tokenizer uses the first few hundred ids

# FLUX.1 [dev] (black-forest-labs/FLUX.1-dev) and SD 3.5 Large
# (stabilityai/stable-diffusion-3.5-large): T5 v1.1 XXL's encoder, their transformers, and
# their 16-channel VAE.
T5_XXL = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "feed_forward_proj": "gated-gelu",
}
FLUX_DEV_TRANSFORMER = {"guidance_embeds": True}  # the class's other defaults are [dev]'s
SD35_LARGE_TRANSFORMER = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 38,
    "attention_head_dim": 64,
    "num_attention_heads": 38,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 2432,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": 192,
    "qk_norm": "rms_norm",
}
FLOW_VAE = {
    **VAE,
    "latent_channels": 16,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}


@dataclass(frozen=True)
class Arch:
    name: str
    pipeline_class: type[DiffusionPipeline]
    size: int
    steps: int
    unet: dict  # the denoiser's config: a UNet's, or a flow family's transformer's
    vae: dict
    text_encoders: tuple  # (model class, config) per encoder, in the pipeline's order
    guidance: float = GUIDANCE  # CFG; FLUX.1 [dev]: its distilled guidance value
    rows_per_job: int = 2  # denoiser rows per job and step: 2 with CFG


ARCHS = {
    "sd15": {
        "full": Arch(
            "SD1.5-architecture",
            StableDiffusionPipeline,
            512,
            25,
            SD15_UNET,
            {**VAE, "sample_size": 512, "scaling_factor": 0.18215},
            ((CLIPTextModel, CLIP_VIT_L),),
        ),
        "tiny": Arch(
            "SD1.5-architecture (tiny)",
            StableDiffusionPipeline,
            64,
            4,
            TINY_SD15_UNET,
            {**TINY_VAE, "sample_size": 64, "scaling_factor": 0.18215},
            ((CLIPTextModel, TINY_CLIP),),
        ),
    },
    "sdxl": {
        "full": Arch(
            "SDXL-architecture",
            StableDiffusionXLPipeline,
            1024,
            30,
            SDXL_UNET,
            # Decoded in the working dtype, as with the fp16-fix VAE peers use; the released
            # VAE's force_upcast would decode in fp32.
            {**VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": False},
            ((CLIPTextModel, CLIP_VIT_L), (CLIPTextModelWithProjection, OPENCLIP_BIGG)),
        ),
        "tiny": Arch(
            "SDXL-architecture (tiny)",
            StableDiffusionXLPipeline,
            64,
            4,
            TINY_SDXL_UNET,
            {**TINY_VAE, "sample_size": 64, "scaling_factor": 0.13025, "force_upcast": False},
            ((CLIPTextModel, TINY_CLIP), (CLIPTextModelWithProjection, TINY_CLIP)),
        ),
    },
    "flux": {
        "full": Arch(
            "FLUX.1 [dev]-architecture",
            FluxPipeline,
            1024,
            28,
            FLUX_DEV_TRANSFORMER,
            {**FLOW_VAE, "sample_size": 1024, "scaling_factor": 0.3611, "shift_factor": 0.1159},
            ((CLIPTextModel, CLIP_VIT_L), (T5EncoderModel, T5_XXL)),
            guidance=3.5,
            rows_per_job=1,
        ),
        # The tests' tiny model (gpu_workers.tiny_models); its configs are there.
        "tiny": Arch(
            "FLUX.1 [dev]-architecture (tiny)", FluxPipeline, 64, 4, {}, {}, (), 3.5, 1
        ),
    },
    "sd35": {
        "full": Arch(
            "SD 3.5 Large-architecture",
            StableDiffusion3Pipeline,
            1024,
            28,
            SD35_LARGE_TRANSFORMER,
            {**FLOW_VAE, "sample_size": 1024, "scaling_factor": 1.5305, "shift_factor": 0.0609},
            (
                (CLIPTextModelWithProjection, CLIP_VIT_L),
                (CLIPTextModelWithProjection, OPENCLIP_BIGG),
                (T5EncoderModel, T5_XXL),
            ),
            guidance=3.5,
        ),
        "tiny": Arch(
            "SD 3.5-architecture (tiny)", StableDiffusion3Pipeline, 64, 4, {}, {}, (), 3.5
        ),
    },
}
FLOW_PIPELINES = (FluxPipeline, StableDiffusion3Pipeline)
# FLUX.1 [dev] (17 G parameters with T5) and SD 3.5 Large (14 G) each need a process of their
# own: a run keeps every model it loaded, and saves each to its scratch folder.
DEFAULT_ARCHS = ("sd15", "sdxl")


def build_pipeline(arch: Arch, *, device: str, dtype: torch.dtype, scratch: Path):
    """The architecture with random weights, on `device` in `dtype`."""
    if arch.pipeline_class in FLOW_PIPELINES:
        return build_flow_pipeline(arch, device=device, dtype=dtype, scratch=scratch)
    tokenizer = tiny_clip_tokenizer(Path(tempfile.mkdtemp(dir=scratch)) / "tokenizer")
    token_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    # Initialized on the device: filling billions of random weights takes minutes on a CPU.
    with torch.device(device):
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **arch.unet)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            **arch.vae,
        )
        encoders = [
            model_class(
                CLIPTextConfig(
                    vocab_size=CLIP_VOCAB_SIZE,
                    max_position_embeddings=tokenizer.model_max_length,
                    **config,
                    **token_ids,
                )
            )
            for model_class, config in arch.text_encoders
        ]
    # SD's noise schedule; Euler, A1111's "Euler".
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    if arch.pipeline_class is StableDiffusionXLPipeline:
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_flow_pipeline(arch: Arch, *, device: str, dtype: torch.dtype, scratch: Path):
    """FLUX.1 or SD 3.5 with random weights: the tiny test models, or the real sizes built
    on the device from the configs above (tiny tokenizers: speed does not depend on them)."""
    flux = arch.pipeline_class is FluxPipeline
    if not arch.unet:  # tiny
        build = build_tiny_flux if flux else build_tiny_sd3
        folder = build(Path(tempfile.mkdtemp(dir=scratch)) / "tiny")
        pipe = arch.pipeline_class.from_pretrained(folder, dtype=dtype)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    build_dir = Path(tempfile.mkdtemp(dir=scratch))
    clip_tokenizers = [
        tiny_clip_tokenizer(build_dir / "tokenizer"),
        tiny_clip_tokenizer(build_dir / "tokenizer_2", pad_token="!"),
    ]
    t5_tokenizer = tiny_t5_tokenizer(build_dir / "t5", model_max_length=512 if flux else 256)
    with torch.device(device):
        encoders = []
        for (model_class, config), tokenizer in zip(
            arch.text_encoders, [*clip_tokenizers[: len(arch.text_encoders) - 1], t5_tokenizer],
            strict=True,
        ):
            if model_class is T5EncoderModel:
                encoders.append(T5EncoderModel(T5Config(**config)))
            else:
                encoders.append(
                    model_class(
                        CLIPTextConfig(
                            vocab_size=CLIP_VOCAB_SIZE,
                            max_position_embeddings=tokenizer.model_max_length,
                            bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id,
                            **config,
                        )
                    )
                )
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            **arch.vae,
        )
        if flux:
            transformer = FluxTransformer2DModel(**arch.unet)
        else:
            transformer = SD3Transformer2DModel(**arch.unet)
    if flux:
        scheduler = FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
        pipe = FluxPipeline(
            scheduler=scheduler,
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=clip_tokenizers[0],
            text_encoder_2=encoders[1],
            tokenizer_2=t5_tokenizer,
            transformer=transformer,
        )
    else:
        pipe = StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=clip_tokenizers[0],
            text_encoder_2=encoders[1],
            tokenizer_2=clip_tokenizers[1],
            text_encoder_3=encoders[2],
            tokenizer_3=t5_tokenizer,
        )
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flops_per_image(pipe, request, device: str) -> int:
    """Text encoders once, every denoiser step (two rows with CFG), one VAE decode.

    Counted over whole pipeline calls of 1 and 2 steps: their difference is one step.
    """

    def pipeline_flops(steps: int) -> int:
        kwargs = plain_call_kwargs(dataclasses.replace(request, steps=steps), device)
        return count_flops(lambda: pipe(**kwargs))

    one, two = pipeline_flops(1), pipeline_flops(2)
    return one + (request.steps - 1) * (two - one)


def bench_arch(arch_key: str, args, scratch: Path, matmul_rate: float, save=None) -> dict:
    """`save(result)`, if given, after every run: a run cut short keeps what it measured."""
    arch = ARCHS[arch_key]["tiny" if args.tiny else "full"]
    size, steps = args.size or arch.size, args.steps or arch.steps
    folder = scratch / arch_key  # the engine loads models from folders, as in production

    def requests(count: int, steps: int):
        return make_requests(
            str(folder), count, width=size, height=size, steps=steps, guidance=arch.guidance
        )

    def log(line: str) -> None:
        print(f"[{arch_key}] {line}", file=sys.stderr, flush=True)

    log(f"building {arch.name} on {args.device}")
    pipe = build_pipeline(arch, device=args.device, dtype=args.dtype, scratch=scratch)
    params = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    flops = flops_per_image(pipe, requests(1, steps)[0], args.device)
    floor_s = flops / matmul_rate
    log(f"{_count(flops)}FLOP per image, floor {floor_s:.4f} s per image")

    # Saved before any compile, which wraps the denoiser's forward.
    pipe.save_pretrained(folder)

    runs, arrivals = [], []
    result = {
        "arch": arch.name,
        "width": size,
        "height": size,
        "steps": steps,
        "guidance": arch.guidance,
        "guidance_kind": "distilled guidance" if arch.rows_per_job == 1 else "CFG",
        "rows_per_job": arch.rows_per_job,
        "scheduler": type(pipe.scheduler).__name__,
        "params": params,
        "flops_per_image": flops,
        "floor_s_per_image": floor_s,
        "max_batch": max(args.concurrency),
        "max_wait_ms": MAX_WAIT_MS,
        # Seconds of the engine's warm-up at preload, by compile setting: a UNet (or flow
        # transformer) call per batch bucket up to the max batch's rows, and VAE decodes (0:
        # no buckets, none).
        "warmup_s": {},
        "runs": runs,
        "arrivals": arrivals,
    }

    def measured(run: dict, into: list) -> None:
        baseline = (runs or [run])[0]  # plain diffusers, eager: the first run
        run["vs_plain"] = run["images_per_s"] / baseline["images_per_s"]
        run["vs_floor"] = (1 / run["images_per_s"]) / floor_s
        into.append(run)
        log(_run_line(run))
        if save is not None:
            save(result)

    for compiled in args.compile:
        if compiled:
            # As the engine's STUDIO_COMPILE=1 does it.
            (pipe.transformer if arch.pipeline_class in FLOW_PIPELINES else pipe.unet).compile(
                fullgraph=True
            )
        run_plain(pipe, requests(1, WARMUP_STEPS), device=args.device, queued=False)
        numbers = run_plain(pipe, requests(args.jobs, steps), device=args.device, queued=False)
        run = {"runner": "plain diffusers", "compile": compiled, "concurrency": 1, **numbers}
        measured(run, runs)
    del pipe  # its memory goes to the engine's copies
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()

    for compiled in args.compile:
        # As a worker runs with STUDIO_COMPILE set so: the device's defaults (on CUDA,
        # compiled: batch buckets, so warming them up at preload is all the compiling).
        config = WorkerConfig(
            device=args.device,
            dtype=args.dtype,
            compile=compiled,
            **{
                **device_defaults(args.device, compile=compiled),
                **({} if args.buckets is None else {"batch_buckets": args.buckets}),
            },
        )
        engine = Engine(config, max_batch=max(args.concurrency), max_wait_ms=MAX_WAIT_MS)
        with engine:
            [warmup_s] = engine.preload([str(folder)]).values()
            result["warmup_s"]["on" if compiled else "off"] = warmup_s
            log(f"engine warm-up, compile {'on' if compiled else 'off'}: {warmup_s:.1f} s")
            for concurrency in args.concurrency:
                # One warm-up per batch size: torch.compile and cuDNN specialize on it.
                run_engine(engine, requests(concurrency, WARMUP_STEPS), concurrency=concurrency)
                jobs = max(args.jobs, concurrency * args.rounds)
                numbers = run_engine(engine, requests(jobs, steps), concurrency=concurrency)
                run = {"runner": "engine", "compile": compiled, "concurrency": concurrency}
                measured({**run, **numbers}, runs)
        if args.arrivals:
            best = max(r["images_per_s"] for r in runs if r["runner"] == "engine")
            rate = args.arrival_rate or ARRIVAL_LOAD * best
            for mode, continuous in (("continuous", True), ("batch-at-a-time", False)):
                with Engine(
                    config,
                    max_batch=max(args.concurrency),
                    max_wait_ms=MAX_WAIT_MS,
                    continuous=continuous,
                ) as engine:
                    numbers = run_arrivals(
                        engine, requests(args.arrivals, steps), rate_per_s=rate, seed=ARRIVAL_SEED
                    )
                run = {"runner": f"engine, arrivals, {mode}", "compile": compiled}
                measured({**run, "concurrency": None, **numbers}, arrivals)
    return result


def _run_line(run: dict) -> str:
    clients = "" if run["concurrency"] is None else f", {run['concurrency']} concurrent"
    return (
        f"{run['runner']}, compile {'on' if run['compile'] else 'off'}{clients}: "
        f"{run['images_per_s']:.3f} images/s, "
        f"latency p50 {run['latency_p50_s']:.3f} s p95 {run['latency_p95_s']:.3f} s"
    )


def arch_markdown(result: dict, common: dict) -> str:
    machine = common["machine"]
    device = machine.get("gpu", f"CPU ({machine['cpu']})")
    params = ", ".join(f"{name} {_count(count)}" for name, count in result["params"].items())
    lines = [
        f"## {result['arch']}, {result['width']}x{result['height']}, {result['steps']} steps, "
        f"{result.get('guidance_kind', 'CFG')} {result['guidance']:g}: {device}",
        "",
        f"Command: `{common['command']}`  ",
        f"Machine: {machine_line(machine)}",
        "",
        f"Random weights ({params} parameters), "
        f"{common['dtype']}, SDPA attention, {result['scheduler']}. Plain diffusers: "
        "`__call__` one job at a time, latency from each job's own start. Engine: N client "
        "threads each submit their next job when the previous one finished (as a worker's "
        f"Celery threads do); max batch {result['max_batch']}, max wait "
        f"{result['max_wait_ms']:g} ms, previews on. Every configuration warmed up first "
        "(compilation excluded).",
        "",
        *_warmup_lines(result),
        f"Floor: {_count(result['flops_per_image'])}FLOP per image (text encoders, "
        f"{result['steps']} denoiser steps at {result.get('rows_per_job', 2)} rows per job, "
        "VAE decode; "
        f"`torch.utils.flop_counter`) / {_count(common['matmul_flops_per_s'])}FLOP/s "
        f"({common['dtype']} {common['matmul_size']}x{common['matmul_size']} matmul, "
        f"measured) = **{result['floor_s_per_image']:.3f} s per image** "
        f"({1 / result['floor_s_per_image']:.2f} images/s).",
        "",
        "| runner | torch.compile | concurrent jobs | jobs | images/s | vs plain "
        "| latency p50 / p95 (s) | first step p50 / p95 (s) | s per image / floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in result["runs"]:
        lines.append(
            f"| {run['runner']} | {'on' if run['compile'] else 'off'} | {run['concurrency']} "
            f"| {run['jobs']} | {run['images_per_s']:.3f} | {run['vs_plain']:.2f}x "
            f"| {run['latency_p50_s']:.3f} / {run['latency_p95_s']:.3f} "
            f"| {run['first_step_p50_s']:.3f} / {run['first_step_p95_s']:.3f} "
            f"| {run['vs_floor']:.1f}x |"
        )
    if result["arrivals"]:
        rate = result["arrivals"][0]["offered_rate_per_s"]
        lines += [
            "",
            f"Arrival process: {result['arrivals'][0]['jobs']} jobs at Poisson arrival times, "
            f"{rate:.3g} jobs/s, the same times for both modes; continuous batching (jobs "
            "join a running batch at its next step) vs batch-at-a-time "
            "(`Engine(continuous=False)`). Queue time: submit → first step.",
            "",
            "| mode | torch.compile | images/s | latency p50 / p95 (s) "
            "| first step p50 / p95 (s) |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for run in result["arrivals"]:
            lines.append(
                f"| {run['runner'].rpartition(', ')[2]} | {'on' if run['compile'] else 'off'} "
                f"| {run['images_per_s']:.3f} "
                f"| {run['latency_p50_s']:.3f} / {run['latency_p95_s']:.3f} "
                f"| {run['first_step_p50_s']:.3f} / {run['first_step_p95_s']:.3f} |"
            )
    return "\n".join(lines)


def _warmup_lines(result: dict) -> list[str]:
    """The engine's warm-up at preload, where one ran (batch buckets: compiled on CUDA)."""
    warmups = {name: s for name, s in result.get("warmup_s", {}).items() if s > 0}
    if not warmups:
        return []
    times = ", ".join(f"{seconds:.1f} s compile {name}" for name, seconds in warmups.items())
    return [
        "Engine warm-up at preload (a UNet or flow transformer call per batch bucket up to "
        f"the max batch's rows, and VAE decodes): {times}.",
        "",
    ]


def _count(number: float) -> str:
    """1.23 G, 860 M: parameters and FLOPs of real and tiny models alike."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= factor:
            return f"{number / factor:.3g} {prefix}"
    return f"{number:.3g} "


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda, cuda:N or cpu (default: cuda when there is one)",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, help="default: fp16 on a GPU, fp32 on a CPU (slow in fp16)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny configs, 64x64, 4 steps")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="SD1.5 only, concurrency 1 and 8, 4 jobs, 16 arrivals (other options still apply)",
    )
    parser.add_argument(
        "--arch",
        nargs="+",
        choices=ARCHS,
        default=list(DEFAULT_ARCHS),
        help=f"default: {' '.join(DEFAULT_ARCHS)}; flux and sd35 each in a run of their own",
    )
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument(
        "--compile", nargs="+", choices=("off", "on"), help="default: off on (GPU), off (CPU)"
    )
    parser.add_argument(
        "--jobs", type=int, default=8, help="jobs per plain run; engine runs at least as many"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="engine runs: concurrency x ROUNDS jobs"
    )
    parser.add_argument(
        "--buckets",
        type=_buckets,
        help="the engine's batch buckets, UNet rows per model call, e.g. 1,2,4,8 (default: "
        "the worker's: 1,2,4,8,16,32 compiled on CUDA, none otherwise)",
    )
    parser.add_argument("--size", type=int, help="width and height (default: the arch's)")
    parser.add_argument("--steps", type=int, help="default: the arch's")
    parser.add_argument(
        "--arrivals",
        type=int,
        default=32,
        help="jobs of the arrival process, continuous vs batch-at-a-time (0: none)",
    )
    parser.add_argument(
        "--arrival-rate",
        type=float,
        help=f"jobs/s (default: {ARRIVAL_LOAD:g} x the engine's best images/s)",
    )
    parser.add_argument("--write", type=Path, help="put the sections into this markdown file")
    parser.add_argument("--json", type=Path, help="also written after every run")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if f"--{name}" not in argv:
                setattr(args, name, value)
    args.dtype = DTYPES[args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")]
    compile_names = args.compile or (["off", "on"] if args.device.startswith("cuda") else ["off"])
    # Off first: the plain pipeline is compiled in place.
    args.compile = sorted({name == "on" for name in compile_names})
    return args


def _buckets(value: str) -> tuple[int, ...]:
    sizes = tuple(int(size) for size in value.split(","))
    if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: ascending positive sizes, each once")
    return sizes


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    quiet_libraries()
    # fp16 random weights overflow to NaN; speed does not care, numpy's cast warns about it.
    warnings.filterwarnings("ignore", "invalid value encountered in cast", RuntimeWarning)
    # Big enough to reach the device's best rate, small enough to time in about a second.
    matmul_size, repeats = (8192, 50) if args.device.startswith("cuda") else (1024, 10)
    common = {
        "command": shlex.join(["python", "-m", "gpu_workers.bench.gpu", *argv]),
        "machine": machine_info(args.device),
        "dtype": next(name for name, dtype in DTYPES.items() if dtype == args.dtype),
        "matmul_size": matmul_size,
        "matmul_flops_per_s": matmul_flops_per_s(
            args.device, args.dtype, size=matmul_size, repeats=repeats
        ),
    }
    results = {**common, "archs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        for arch_key in args.arch:

            def save(result, arch_key=arch_key):
                results["archs"][arch_key] = result
                if args.json:
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

            result = bench_arch(arch_key, args, Path(scratch), common["matmul_flops_per_s"], save)
            save(result)
            markdown = arch_markdown(result, common)
            print(markdown + "\n", flush=True)
            if args.write:
                key = f"gpu-{arch_key}" + ("-tiny" if args.tiny else "")
                write_section(args.write, key, markdown)
    return results


if __name__ == "__main__":
    main()
