"""Memory of the flow families (issue #17), on the tiny FLUX.1 and SD 3.x models on the CPU:
- the model cache counts every component of their pipelines, T5 included, and evicts by
  that count;
- WorkerConfig.flow_dtype loads them (and their ControlNets) in their own dtype, beside SD
  models in the worker's dtype;
- STUDIO_FP8_TRANSFORMER stores the transformer's layer weights in fp8: the cache counts
  the smaller weights, and the image stays close to bf16's."""

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from transformers import T5EncoderModel

from gpu_workers.engine import Engine
from gpu_workers.pipelines import load_controlnet, load_pipeline, loaded_sources, pipeline_bytes
from gpu_workers.requests import GenerationRequest, LoraRef
from gpu_workers.tiny_models import build_tiny_sd3_controlnet
from tests.lora_builders import flux_peft_lora_bytes

pytestmark = pytest.mark.usefixtures("empty_pipeline_cache")


@pytest.fixture(params=["flux", "sd3"])
def flow_model(request, tiny_flux, tiny_sd3):
    return str({"flux": tiny_flux, "sd3": tiny_sd3}[request.param])


def parameter_and_buffer_bytes(model):
    return sum(
        tensor.numel() * tensor.element_size() for tensor in (*model.parameters(), *model.buffers())
    )


def test_the_cache_counts_every_model_of_a_flow_pipeline_t5_included(flow_model, cpu_config):
    pipe = load_pipeline(flow_model, cpu_config)
    models = [pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2]
    if hasattr(pipe, "text_encoder_3"):  # SD 3.x: two CLIPs and T5
        models.append(pipe.text_encoder_3)
    assert sum(isinstance(model, T5EncoderModel) for model in models) == 1

    assert pipeline_bytes(pipe) == sum(parameter_and_buffer_bytes(m) for m in models)


def test_flow_pipelines_are_evicted_by_their_count_with_t5(tiny_flux, tiny_sd3, cpu_config):
    flux, sd3 = str(tiny_flux), str(tiny_sd3)
    flux_bytes = pipeline_bytes(load_pipeline(flux, cpu_config))
    sd3_pipe = load_pipeline(sd3, cpu_config)
    sd3_t5_bytes = parameter_and_buffer_bytes(sd3_pipe.text_encoder_3)
    # Both would fit if T5 were left out of the count.
    config = dataclasses.replace(
        cpu_config, model_cache_bytes=flux_bytes + pipeline_bytes(sd3_pipe) - sd3_t5_bytes // 2
    )

    load_pipeline(flux, config)
    load_pipeline(sd3, config)

    assert loaded_sources(config) == [sd3]


def test_flow_families_and_their_controlnets_load_in_the_flow_dtype(
    tiny_flux, tiny_sd15, cpu_config, tmp_path
):
    config = dataclasses.replace(cpu_config, flow_dtype=torch.bfloat16)
    controlnet = build_tiny_sd3_controlnet(tmp_path / "controlnet-sd3")

    flux = load_pipeline(str(tiny_flux), config)
    sd = load_pipeline(str(tiny_sd15), config)

    dtypes = {model.dtype for model in flux.components.values() if hasattr(model, "dtype")}
    assert dtypes == {torch.bfloat16}
    assert sd.unet.dtype == sd.vae.dtype == torch.float32
    assert load_controlnet(str(controlnet), config).dtype == torch.bfloat16


def test_fp8_transformer_halves_its_layer_weights_and_the_image_stays_close(tiny_flux, cpu_config):
    bf16 = dataclasses.replace(cpu_config, flow_dtype=torch.bfloat16)
    fp8 = dataclasses.replace(bf16, fp8_transformer=True)
    request = GenerationRequest(
        model_source=str(tiny_flux),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=4,
        guidance_scale=3.5,
        width=64,
        height=64,
        seed=1234,
    )

    pipes, images = [], []
    for config in (bf16, fp8):
        pipes.append(load_pipeline(str(tiny_flux), config))
        engine = Engine(config).start()
        try:
            images.append(np.asarray(engine.submit(request).result().images[0], dtype=float))
        finally:
            engine.shutdown()

    transformer = pipes[1].transformer
    assert transformer.dtype == torch.bfloat16  # what it computes in
    stored_in_fp8 = {
        name
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.float8_e4m3fn
    }
    # Every attention and feed-forward projection; diffusers keeps the norms' as they are.
    projections = {
        name
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear) and (".attn." in name or ".ff" in name)
    }
    assert projections and projections <= stored_in_fp8

    def layer_bytes(pipe):
        modules = dict(pipe.transformer.named_modules())
        return sum(parameter_and_buffer_bytes(modules[name]) for name in stored_in_fp8)

    assert layer_bytes(pipes[0]) == 2 * layer_bytes(pipes[1])  # weights and biases
    assert pipeline_bytes(pipes[1]) == pipeline_bytes(pipes[0]) - layer_bytes(pipes[1])
    difference = np.abs(images[0] - images[1])
    assert 0 < difference.mean() < 2 and difference.max() < 32  # of 255


def test_a_lora_runs_on_an_fp8_transformer(tiny_flux, cpu_config, tmp_path):
    """PEFT makes a LoRA's layers in the transformer's fp8 storage dtype, which can't
    compute: they are kept in bf16, and the LoRA changes the image."""
    data = flux_peft_lora_bytes(tiny=True, seed=1)
    path = tmp_path / "style.safetensors"
    path.write_bytes(data)
    lora = LoraRef(sha256=hashlib.sha256(data).hexdigest(), source=str(path), name="style")
    config = dataclasses.replace(
        cpu_config,
        flow_dtype=torch.bfloat16,
        fp8_transformer=True,
        lora_cache_dir=str(tmp_path / "lora-cache"),
    )
    request = GenerationRequest(
        model_source=str(tiny_flux),
        prompt="a cat on the mat",
        negative_prompt="",
        steps=3,
        guidance_scale=3.5,
        width=64,
        height=64,
        seed=1234,
    )
    engine = Engine(config).start()
    try:
        base = np.asarray(engine.submit(request).result().images[0], dtype=float)
        styled = engine.submit(dataclasses.replace(request, loras=(lora,))).result().images[0]
    finally:
        engine.shutdown()
    assert np.abs(np.asarray(styled, dtype=float) - base).mean() > 0
