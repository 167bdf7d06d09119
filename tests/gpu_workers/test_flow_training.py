"""DreamBooth-LoRA training on the tiny FLUX.1 [dev] and SD 3.x models (CPU, fp32): a few
steps run with the run's contract (progress, samples, evaluation loss, cancel), and the LoRA
file is in diffusers' layout, which FluxPipeline / StableDiffusion3Pipeline.load_lora_weights
load and which changes a fixed-seed image."""

import re
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from gpu_workers import pipelines
from gpu_workers.config import WorkerConfig
from gpu_workers.flow_training import kohya_sd3_version, training_config
from gpu_workers.training import train_dreambooth_lora
from gpu_workers.training_plan import (
    TrainingCanceled,
    TrainingFailed,
    TrainingImage,
    TrainingRequest,
)

IMAGES = tuple(
    TrainingImage(Image.new("RGB", (64, 64), (70 * n, 90, 160)), "a photo of zxq dog")
    for n in range(3)
)


def request_for(source, **changes):
    values = {
        "model_source": str(source), "images": IMAGES, "instance_prompt": "a photo of zxq dog",
        "class_prompt": "a photo of dog", "resolution": 64, "steps": 4, "learning_rate": 5e-3,
        "rank": 4, "batch_size": 2, "seed": 3, "sample_steps": 2, "sample_every": 2,
    }
    return TrainingRequest(**{**values, **changes})


@pytest.fixture(params=["flux", "sd3"])
def flow_model(request, tiny_flux, tiny_sd3):
    return {"flux": tiny_flux, "sd3": tiny_sd3}[request.param]


def image(pipe, lora_path=None):
    if lora_path:
        pipe.load_lora_weights(lora_path)
    return np.asarray(
        pipe(
            "a photo of zxq dog", num_inference_steps=3, width=64, height=64,
            generator=torch.Generator().manual_seed(5),
        ).images[0]
    )


def test_a_flow_lora_trains_and_changes_the_pipelines_image(flow_model, cpu_config):
    steps, samples, lines = [], [], []
    result = train_dreambooth_lora(
        request_for(flow_model, prior_preservation=True, class_images=1,
                    metadata={"ss_output_name": "Rex"}),
        config=cpu_config,
        on_step=lambda step, total, loss: steps.append((step, total)),
        on_sample=lambda step, picture: samples.append((step, picture.size)),
        on_log=lines.append,
    )
    try:
        assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert samples == [(2, (64, 64)), (4, (64, 64))]
        assert all(np.isfinite(result.losses)) and len(result.losses) == 4
        assert np.isfinite([result.evaluation_loss_before, result.evaluation_loss_after]).all()
        assert "Generating 1 class images for “a photo of dog”." in lines
        assert any("transformer (rank 4)" in line for line in lines)
        with safe_open(result.lora_path, "pt") as opened:
            names, metadata = list(opened.keys()), opened.metadata()
        # diffusers' peft layout, attention projections only.
        assert names and all(name.startswith("transformer.") for name in names)
        assert any(name.endswith(".attn.to_q.lora_A.weight") for name in names)
        assert not any(".ff." in name for name in names)
        assert (metadata["ss_network_dim"], metadata["ss_output_name"]) == ("4", "Rex")

        pipe = pipelines._load(str(flow_model), cpu_config, None)
        pipe.set_progress_bar_config(disable=True)
        before = image(pipe)
        assert not np.array_equal(before, image(pipe, result.lora_path))
    finally:
        shutil.rmtree(Path(result.lora_path).parent)


def test_fp8_base_weights_halve_the_frozen_layers_and_the_lora_still_trains(tiny_flux):
    """The 24 GB preset's storage (TrainingRequest.fp8_base) on the tiny FLUX.1 in bf16 on the
    CPU: the frozen layers' weights take half their bytes, gradients flow through their
    casts into fp32 LoRA layers, and the LoRA loads in FluxPipeline and changes its image."""
    config = WorkerConfig(device="cpu", dtype=torch.bfloat16)
    lines = []
    result = train_dreambooth_lora(
        request_for(tiny_flux, fp8_base=True, sample_every=0), config=config,
        on_log=lines.append,
    )
    try:
        assert all(np.isfinite(result.losses)) and len(result.losses) == 4
        assert result.evaluation_loss_after != result.evaluation_loss_before
        stored = next(line for line in lines if line.startswith("Stored the frozen"))
        bf16_bytes, fp8_bytes = (
            int(number.replace(",", ""))
            for number in re.match(r".*: ([\d,]+) bytes became ([\d,]+) ", stored).groups()
        )
        assert fp8_bytes > 0 and bf16_bytes == 2 * fp8_bytes
        with safe_open(result.lora_path, "pt") as opened:
            lora = {name: opened.get_tensor(name) for name in opened.keys()}
        assert {tensor.dtype for tensor in lora.values()} == {torch.float32}
        # Trained: the LoRA's up matrices (zero at the start) moved.
        assert any(
            tensor.abs().sum() > 0 for name, tensor in lora.items() if "lora_B" in name
        )

        pipe = pipelines._load(str(tiny_flux), WorkerConfig(device="cpu", dtype=torch.float32),
                               None)
        pipe.set_progress_bar_config(disable=True)
        before = image(pipe)
        assert not np.array_equal(before, image(pipe, result.lora_path))
    finally:
        shutil.rmtree(Path(result.lora_path).parent)


def test_fp8_base_weights_are_refused_for_sd_models(tiny_sd15, cpu_config):
    with pytest.raises(TrainingFailed, match="FP8 base weights are for FLUX.1 and SD 3.x"):
        train_dreambooth_lora(request_for(tiny_sd15, fp8_base=True), config=cpu_config)


def test_sd3_loras_name_kohyas_model_version(tiny_sd3, cpu_config):
    result = train_dreambooth_lora(
        request_for(tiny_sd3, steps=1, sample_every=0), config=cpu_config
    )
    with safe_open(result.lora_path, "pt") as opened:
        # The tiny model has SD 3.5's q/k norms and no dual-attention layers: 3.5 Large's.
        assert opened.metadata()["ss_base_model_version"] == "5-large"
    shutil.rmtree(Path(result.lora_path).parent)


def test_kohya_sd3_versions():
    assert kohya_sd3_version({"qk_norm": None, "dual_attention_layers": ()}) == "medium"
    assert kohya_sd3_version({"qk_norm": "rms_norm", "dual_attention_layers": ()}) == "5-large"
    assert kohya_sd3_version({"qk_norm": "rms_norm", "dual_attention_layers": (0, 1)}) == (
        "5-medium"
    )


def test_cancel_stops_a_flow_run_at_its_next_step(tiny_flux, cpu_config):
    done = []
    with pytest.raises(TrainingCanceled, match="Canceled at step 2 of 50."):
        train_dreambooth_lora(
            request_for(tiny_flux, steps=50, sample_every=0),
            config=cpu_config,
            on_step=lambda step, total, loss: done.append(step),
            should_cancel=lambda: len(done) == 2,
        )
    assert done == [1, 2]


def test_the_text_encoders_of_a_flow_model_are_not_trained(tiny_sd3, cpu_config):
    with pytest.raises(TrainingFailed, match="Training Stable Diffusion 3.x's text encoders"):
        train_dreambooth_lora(request_for(tiny_sd3, train_text_encoder=True), config=cpu_config)


def test_half_precision_trains_flow_lora_weights_in_fp32(tiny_sd3):
    """The GPU path (frozen transformer in bf16 under autocast, LoRA weights and their
    optimiser in fp32), run with bf16 on the CPU."""
    result = train_dreambooth_lora(
        request_for(tiny_sd3, steps=2, sample_every=0),
        config=WorkerConfig(device="cpu", dtype=torch.bfloat16),
    )
    assert all(np.isfinite(result.losses))
    with safe_open(result.lora_path, "pt") as opened:
        assert {opened.get_tensor(name).dtype for name in opened.keys()} == {torch.float32}
    shutil.rmtree(Path(result.lora_path).parent)


def test_flow_models_train_in_bf16_where_the_worker_runs_fp16_on_a_bf16_gpu():
    fp16_gpu = WorkerConfig(device="cuda", dtype=torch.float16)
    with mock.patch("torch.cuda.is_bf16_supported", return_value=True):
        assert training_config(fp16_gpu).dtype == torch.bfloat16
        assert training_config(WorkerConfig(device="cuda", dtype=torch.float32)).dtype == (
            torch.float32
        )
    with mock.patch("torch.cuda.is_bf16_supported", return_value=False):
        assert training_config(fp16_gpu).dtype == torch.float16
    assert training_config(WorkerConfig(device="cpu", dtype=torch.float16)).dtype == (
        torch.float16
    )
