import json
import subprocess
import sys

from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from gpu_workers.pipelines import load_pipeline
from gpu_workers.tiny_models import TINY_SD15_NAME, build_tiny_sd15


def test_folder_is_a_normal_diffusers_folder_with_safetensors(tiny_sd15):
    assert tiny_sd15.name == TINY_SD15_NAME
    model_index = json.loads((tiny_sd15 / "model_index.json").read_text())
    assert model_index["_class_name"] == "StableDiffusionPipeline"
    assert model_index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert model_index["vae"] == ["diffusers", "AutoencoderKL"]
    assert model_index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert model_index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert model_index["scheduler"] == ["diffusers", "EulerDiscreteScheduler"]
    assert (tiny_sd15 / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tiny_sd15 / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tiny_sd15 / "text_encoder" / "model.safetensors").is_file()
    assert (tiny_sd15 / "tokenizer" / "vocab.json").is_file()
    assert (tiny_sd15 / "tokenizer" / "merges.txt").is_file()
    assert not list(tiny_sd15.rglob("*.bin"))


def test_loads_through_load_pipeline_with_sd15_architecture(tiny_sd15, cpu_config):
    pipe = load_pipeline(str(tiny_sd15), cpu_config)

    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.safety_checker is None
    assert pipe.vae_scale_factor == 8  # like real SD: 64x64 px ↔ 8x8 latents
    assert pipe.vae.config.latent_channels == pipe.unet.config.in_channels == 4
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.unet.config.down_block_types == ["CrossAttnDownBlock2D", "DownBlock2D"]
    assert len(pipe.tokenizer) == pipe.text_encoder.config.vocab_size
    assert pipe.tokenizer.model_max_length == pipe.text_encoder.config.max_position_embeddings == 77
    scheduler = pipe.scheduler.config
    assert (scheduler.beta_start, scheduler.beta_end) == (0.00085, 0.012)
    assert scheduler.beta_schedule == "scaled_linear"
    assert scheduler.num_train_timesteps == 1000
    assert pipe.device.type == "cpu"
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == cpu_config.dtype


def test_tokenizer_merges_and_covers_every_byte(tiny_sd15, cpu_config):
    tokenizer = load_pipeline(str(tiny_sd15), cpu_config).tokenizer
    ids = tokenizer("the cat — café ☕").input_ids

    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[1:3]) == ["the</w>", "cat</w>"]
    # Byte-level: nothing in the middle falls back to the unknown token.
    assert tokenizer.unk_token_id not in ids[1:-1]


def test_build_is_idempotent(tiny_sd15):
    model_index = tiny_sd15 / "model_index.json"
    modified = model_index.stat().st_mtime_ns

    assert build_tiny_sd15(tiny_sd15) == tiny_sd15
    assert model_index.stat().st_mtime_ns == modified


def test_command_line_builds_the_same_weights(tiny_sd15, tmp_path):
    target = tmp_path / "built-by-cli"
    completed = subprocess.run(
        [sys.executable, "-m", "gpu_workers.tiny_models", str(target)],
        check=True,
        capture_output=True,
        text=True,
    )

    assert completed.stdout.strip() == str(target)
    # Seeded weights: every machine builds the same model.
    for weights in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        built, reference = load_file(target / weights), load_file(tiny_sd15 / weights)
        assert built.keys() == reference.keys()
        assert all((built[name] == reference[name]).all() for name in built)
    assert not list(tmp_path.glob(".built-by-cli.*")), "the build folder was left behind"
