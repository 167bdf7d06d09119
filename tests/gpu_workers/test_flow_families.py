"""FLUX.1 and SD 3.x (issue #17): single-file checkpoints are recognised from their tensor
names in every layout users download (Black Forest Labs' and Stability's, ComfyUI's with
`model.diffusion_model.`, diffusers'), and diffusers folders from their pipeline class."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gpu_workers import pipelines
from gpu_workers.checkpoints import CheckpointError, checkpoint_architecture
from gpu_workers.requests import GenerationFailed, GenerationRequest


def tiny_tensors(path, names):
    save_file({name: torch.zeros(1) for name in names}, str(path))
    return path


# Tensor names as the real files have them (a few of each; the markers and their neighbours).
BFL_FLUX = [
    "double_blocks.0.img_attn.norm.key_norm.scale",
    "double_blocks.0.img_attn.qkv.weight",
    "single_blocks.0.linear1.weight",
    "guidance_in.in_layer.bias",
    "img_in.weight",
]
DIFFUSERS_FLUX = [
    "transformer_blocks.0.norm1_context.linear.weight",
    "transformer_blocks.0.attn.norm_added_k.weight",
    "single_transformer_blocks.0.proj_mlp.weight",
    "x_embedder.weight",
]
STABILITY_SD3 = [
    "joint_blocks.0.context_block.adaLN_modulation.1.bias",
    "joint_blocks.0.x_block.attn.qkv.weight",
    "x_embedder.proj.weight",
]
DIFFUSERS_SD3 = [
    "transformer_blocks.0.norm1_context.linear.weight",
    "transformer_blocks.0.attn.add_k_proj.weight",
    "pos_embed.proj.weight",
]
COMFY = "model.diffusion_model."


@pytest.mark.parametrize(
    ("names", "architecture"),
    [
        (BFL_FLUX, "flux1"),
        ([COMFY + name for name in BFL_FLUX], "flux1"),
        (DIFFUSERS_FLUX, "flux1"),
        (STABILITY_SD3, "sd3"),
        # SD3.5 files as Stability ships them: the MMDiT under ComfyUI's prefix, then the
        # text encoders.
        (
            [COMFY + name for name in STABILITY_SD3]
            + ["text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight"],
            "sd3",
        ),
        (DIFFUSERS_SD3, "sd3"),
    ],
    ids=["bfl-flux", "comfy-flux", "diffusers-flux", "sd3", "comfy-sd3.5", "diffusers-sd3"],
)
def test_transformer_checkpoints_are_recognised(tmp_path, names, architecture):
    path = tiny_tensors(tmp_path / "model.safetensors", names)

    assert checkpoint_architecture(path) == architecture
    assert pipelines.model_family(str(path)) == {"flux1": "flux", "sd3": "sd3"}[architecture]


def test_flux2_is_named_and_refused(tmp_path):
    path = tiny_tensors(
        tmp_path / "flux2.safetensors",
        [*BFL_FLUX, "single_stream_modulation.lin.weight"],
    )

    with pytest.raises(CheckpointError, match="FLUX.2 checkpoint, a model family the studio"):
        checkpoint_architecture(path)


def test_unet_checkpoints_are_still_what_they_were(tmp_path):
    path = tiny_tensors(
        tmp_path / "sd15.safetensors",
        [COMFY + "input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"],
    )

    assert checkpoint_architecture(path) == "sd15"


@pytest.mark.parametrize(
    ("class_name", "family"),
    [
        ("FluxPipeline", "flux"),
        ("FluxImg2ImgPipeline", "flux"),
        ("StableDiffusion3Pipeline", "sd3"),
        ("StableDiffusion3InpaintPipeline", "sd3"),
        ("StableDiffusionXLPipeline", "sdxl"),
        ("StableDiffusionPipeline", "sd"),
    ],
)
def test_folders_name_their_family(tmp_path, class_name, family):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": class_name}))

    assert pipelines.model_family(str(tmp_path)) == family


# --- the tiny models ------------------------------------------------------------------


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_tiny_flux_loads_as_a_flux_pipeline(tiny_flux, cpu_config):
    pipe = pipelines.load_pipeline(str(tiny_flux), cpu_config)

    assert type(pipe).__name__ == "FluxPipeline"
    assert pipelines.pipeline_family(pipe) == pipelines.FLUX
    assert pipelines.model_family(str(tiny_flux)) == pipelines.FLUX
    assert pipe.vae.config.latent_channels == 16
    assert pipe.transformer.config.in_channels == 64  # 16 channels packed 2×2
    assert pipe.transformer.config.guidance_embeds
    assert type(pipe.text_encoder_2).__name__ == "T5EncoderModel"
    # The T5 tokenizer was built here, with no sentencepiece model and no download.
    ids = pipe.tokenizer_2("a cat on the mat").input_ids
    tokens = pipe.tokenizer_2.convert_ids_to_tokens(ids)
    assert tokens == ["▁a", "▁cat", "▁on", "▁the", "▁mat", "</s>"]
    assert checkpoint_architecture(
        tiny_flux / "transformer" / "diffusion_pytorch_model.safetensors"
    ) == "flux1"
    # The model cache counts T5 with the rest: it is most of a real FLUX.1's text side.
    t5_bytes = pipelines.module_bytes([pipe.text_encoder_2])
    others = [pipe.transformer, pipe.vae, pipe.text_encoder]
    assert pipelines.pipeline_bytes(pipe) == pipelines.module_bytes(others) + t5_bytes


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_tiny_sd3_loads_as_an_sd3_pipeline(tiny_sd3, cpu_config):
    pipe = pipelines.load_pipeline(str(tiny_sd3), cpu_config)

    assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    assert pipelines.pipeline_family(pipe) == pipelines.SD3
    assert pipe.vae.config.latent_channels == 16
    assert pipe.transformer.config.in_channels == 16
    # T5 is wider than the two CLIPs' hidden states side by side, as in SD3.
    clip_width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert pipe.text_encoder_3.config.d_model > clip_width
    assert checkpoint_architecture(
        tiny_sd3 / "transformer" / "diffusion_pytorch_model.safetensors"
    ) == "sd3"


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_other_modes_are_refused_naming_the_family(tiny_flux, cpu_config):
    with pytest.raises(GenerationFailed, match="FLUX.1 models don't support img2img"):
        pipelines.load_pipeline(str(tiny_flux), cpu_config, mode="img2img")


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_single_transformer_file_loads_with_its_config(
    tiny_flux, tiny_sd3, cpu_config, tmp_path, make_engine
):
    """FLUX.1 as users download it: the transformer alone in one file, the text encoders
    and VAE from the base model's diffusers folder (the model's Diffusers config)."""
    path = tmp_path / "flux1-finetune.safetensors"
    shutil.copy(tiny_flux / "transformer" / "diffusion_pytorch_model.safetensors", path)

    pipe = pipelines.load_pipeline(str(path), cpu_config, model_config=str(tiny_flux))

    assert pipelines.pipeline_family(pipe) == pipelines.FLUX
    folder_pipe = pipelines.load_pipeline(str(tiny_flux), cpu_config)
    loaded, original = pipe.transformer.state_dict(), folder_pipe.transformer.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[key], original[key]) for key in original)
    request = GenerationRequest(
        model_source=str(path), model_config=str(tiny_flux), prompt="a cat", negative_prompt="",
        steps=2, guidance_scale=3.5, width=64, height=64, seed=3,
    )
    engine = make_engine()
    from_file = engine.submit(request)
    from_folder = engine.submit(
        dataclasses.replace(request, model_source=str(tiny_flux), model_config=None)
    )
    engine.start()
    assert np.array_equal(
        np.asarray(from_file.result().images[0]), np.asarray(from_folder.result().images[0])
    )

    other = tmp_path / "sd3-config.safetensors"
    shutil.copy(path, other)
    with pytest.raises(GenerationFailed, match="its Diffusers config .* is not"):
        pipelines.load_pipeline(str(other), cpu_config, model_config=str(tiny_sd3))


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_a_single_sd3_transformer_file_loads_with_its_config(tiny_sd3, cpu_config, tmp_path):
    path = tmp_path / "sd3.5-finetune.safetensors"
    shutil.copy(tiny_sd3 / "transformer" / "diffusion_pytorch_model.safetensors", path)

    pipe = pipelines.load_pipeline(str(path), cpu_config, model_config=str(tiny_sd3))

    assert pipelines.pipeline_family(pipe) == pipelines.SD3
    original = pipelines.load_pipeline(str(tiny_sd3), cpu_config).transformer.state_dict()
    loaded = pipe.transformer.state_dict()
    assert all(torch.equal(loaded[key], original[key]) for key in original)


def test_a_single_flow_file_needs_its_config(tmp_path, cpu_config):
    path = tiny_tensors(tmp_path / "flux1-dev.safetensors", BFL_FLUX)

    with pytest.raises(GenerationFailed, match="single-file FLUX.1 transformer: set the model's"):
        pipelines.load_pipeline(str(path), cpu_config)


def test_the_tiny_builds_are_idempotent(tiny_flux, tiny_sd3):
    from gpu_workers.tiny_models import build_tiny_flux, build_tiny_sd3

    before = (tiny_flux / "model_index.json").stat().st_mtime_ns
    assert build_tiny_flux(tiny_flux) == tiny_flux
    assert build_tiny_sd3(tiny_sd3) == tiny_sd3
    assert (tiny_flux / "model_index.json").stat().st_mtime_ns == before
