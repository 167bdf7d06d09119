"""load_pipeline's sources beyond a diffusers folder: a single-file `.safetensors` checkpoint
(built here from the tiny model in the original SD layout), and the sources it refuses with
a clear message before diffusers builds anything: other pipelines, pickles. SDXL's
sources are in test_sdxl.py."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from gpu_workers import pipelines
from gpu_workers.checkpoints import (
    CheckpointError,
    checkpoint_architecture,
    save_original_layout,
    tensor_names,
)
from gpu_workers.pipelines import load_pipeline, loaded_sources
from gpu_workers.requests import GenerationFailed


@pytest.fixture(scope="session")
def tiny_single_file(tiny_sd15, plain_pipeline, tmp_path_factory):
    """The tiny model as one original-layout checkpoint, as A1111 users share models."""
    return save_original_layout(
        plain_pipeline, tmp_path_factory.mktemp("single") / "tiny-sd15.safetensors"
    )


def tiny_tensors(path, names):
    save_file({name: torch.zeros(1) for name in names}, str(path))
    return path


def test_the_checkpoint_has_the_original_layout(tiny_single_file):
    names = tensor_names(tiny_single_file)
    prefixes = {name.split(".")[0] for name in names}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert "model.diffusion_model.input_blocks.0.0.weight" in names  # conv_in
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in names
    assert checkpoint_architecture(tiny_single_file) == "sd15"


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_single_file_checkpoint_loads_with_every_weight_intact(
    tiny_single_file, tiny_sd15, plain_pipeline, cpu_config
):
    pipe = load_pipeline(str(tiny_single_file), cpu_config, model_config=str(tiny_sd15))

    for name in ("unet", "vae", "text_encoder"):
        loaded, original = getattr(pipe, name).state_dict(), getattr(plain_pipeline, name)
        original = original.state_dict()
        assert loaded.keys() == original.keys(), name
        assert all(torch.equal(loaded[key], original[key]) for key in original), name
    assert loaded_sources() == [str(tiny_single_file)]
    assert load_pipeline(str(tiny_single_file), cpu_config) is pipe  # cached like a folder


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_the_engine_generates_from_a_single_file(
    make_engine, tiny_request, tiny_single_file, tiny_sd15
):
    request = dataclasses.replace(
        tiny_request, model_source=str(tiny_single_file), model_config=str(tiny_sd15), steps=2
    )
    engine = make_engine(max_wait_ms=0)
    engine.start()

    result = engine.submit(request).result(timeout=120)

    assert result.images[0].size == (64, 64)


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_without_configs_offline_the_message_says_what_to_set(
    tiny_single_file, cpu_config, monkeypatch
):
    monkeypatch.setattr(pipelines.hub_constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(GenerationFailed, match="Set the model's Diffusers config"):
        load_pipeline(str(tiny_single_file), cpu_config)


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_other_pipelines_are_refused_by_class(tmp_path, cpu_config):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))

    with pytest.raises(GenerationFailed, match="KandinskyV22Pipeline models are not supported"):
        load_pipeline(str(tmp_path), cpu_config)


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_folder_without_model_index_is_refused(tmp_path, cpu_config):
    with pytest.raises(GenerationFailed, match="not a diffusers pipeline"):
        load_pipeline(str(tmp_path), cpu_config)


@pytest.mark.usefixtures("empty_pipeline_cache")
@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickled_checkpoints_are_never_opened(tmp_path, cpu_config, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not opened")
    path.chmod(0)  # opening it would fail differently: the refusal comes first

    with pytest.raises(GenerationFailed, match="pickles are never loaded"):
        load_pipeline(str(path), cpu_config)


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_missing_or_broken_file_says_so(tmp_path, cpu_config):
    with pytest.raises(GenerationFailed, match="does not exist on this worker"):
        load_pipeline(str(tmp_path / "gone.safetensors"), cpu_config)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(GenerationFailed, match="not a valid .safetensors file"):
        load_pipeline(str(broken), cpu_config)


def test_a_lora_is_not_a_checkpoint(tmp_path):
    path = tiny_tensors(tmp_path / "lora.safetensors", ["lora_unet_down_blocks_0.alpha"])

    with pytest.raises(CheckpointError, match="not a full Stable Diffusion checkpoint"):
        checkpoint_architecture(path)
