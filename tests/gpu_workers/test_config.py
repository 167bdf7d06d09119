import logging

import pytest
import torch

from gpu_workers.config import DTYPES, WorkerConfig, choose_dtypes


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("STUDIO_DEVICE", raising=False)
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)
    monkeypatch.delenv("STUDIO_FP8_TRANSFORMER", raising=False)
    monkeypatch.delenv("STUDIO_LORA_CACHE_DIR", raising=False)


def test_auto_picks_cuda_in_half_precision_or_cpu_in_full_precision():
    config = WorkerConfig.from_env()
    if torch.cuda.is_available():
        assert (config.device, config.dtype) == ("cuda", torch.float16)
    else:
        assert config == WorkerConfig(device="cpu", dtype=torch.float32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults_are_the_serving_ones(monkeypatch):
    monkeypatch.setenv("STUDIO_COMPILE", "1")
    config = WorkerConfig.from_env()
    assert (config.channels_last, config.fuse_qkv, config.vae_slicing) == (True, True, False)
    assert config.batch_buckets == (1, 2, 4, 8, 16, 32)
    assert (config.compile_mode, config.vae_decode_chunk, config.cuda_graphs) == (
        "reduce-overhead",
        8,
        True,
    )


def test_cpu_defaults_keep_each_image_as_alone(monkeypatch):
    """On a CPU nothing pads model calls or decodes images together, even compiled: each
    row's image stays bitwise its request's alone."""
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_COMPILE", "1")
    config = WorkerConfig.from_env()
    assert (config.channels_last, config.fuse_qkv, config.vae_slicing) == (False, False, True)
    assert (config.batch_buckets, config.vae_decode_chunk, config.cuda_graphs) == ((), 1, False)


@pytest.mark.parametrize(
    ("value", "buckets"),
    [("1,2,4,8", (1, 2, 4, 8)), (" 2, 6 ,12 ", (2, 6, 12)), ("none", ()), ("NONE", ())],
)
def test_batch_buckets_from_the_environment(monkeypatch, value, buckets):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_BATCH_BUCKETS", value)
    assert WorkerConfig.from_env().batch_buckets == buckets


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1,2,x", "not a list of positive whole numbers"),
        ("0,2", "not a list of positive whole numbers"),
        ("4,2", "ascending order, each once"),
        ("2,2,4", "ascending order, each once"),
    ],
)
def test_bad_batch_buckets_are_refused_naming_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_BATCH_BUCKETS", value)
    with pytest.raises(ValueError, match=f"STUDIO_BATCH_BUCKETS=.*{message}"):
        WorkerConfig.from_env()


def test_a_decode_chunk_larger_than_every_bucket_is_refused(monkeypatch):
    """A decode chunk is padded to a bucket: with none to hold it the decode would fail."""
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_BATCH_BUCKETS", "1,2,4")
    monkeypatch.setenv("STUDIO_VAE_DECODE_CHUNK", "8")
    with pytest.raises(ValueError, match=r"DECODE_CHUNK=8 .* STUDIO_BATCH_BUCKETS \(4\)"):
        WorkerConfig.from_env()
    monkeypatch.setenv("STUDIO_VAE_DECODE_CHUNK", "4")
    assert WorkerConfig.from_env().vae_decode_chunk == 4


def test_compile_mode_and_decode_chunk_from_the_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_COMPILE_MODE", "max-autotune-no-cudagraphs")
    monkeypatch.setenv("STUDIO_VAE_DECODE_CHUNK", "4")
    monkeypatch.setenv("STUDIO_FUSE_QKV", "1")
    config = WorkerConfig.from_env()
    assert (config.compile_mode, config.vae_decode_chunk, config.fuse_qkv) == (
        "max-autotune-no-cudagraphs",
        4,
        True,
    )


def test_an_unknown_compile_mode_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_COMPILE_MODE", "fast")
    with pytest.raises(ValueError, match="STUDIO_COMPILE_MODE='fast'.*reduce-overhead"):
        WorkerConfig.from_env()


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("fp16", torch.float16),
        ("bf16", torch.bfloat16),
        ("fp32", torch.float32),
        (" BF16 ", torch.bfloat16),
    ],
)
def test_dtype_names(monkeypatch, name, dtype):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_DTYPE", name)
    assert WorkerConfig.from_env() == WorkerConfig(device="cpu", dtype=dtype)


def test_unknown_device_is_refused_with_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"STUDIO_DEVICE='tpu'.*auto, cpu, cuda or cuda:N"):
        WorkerConfig.from_env()


def test_unknown_dtype_is_refused_with_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("STUDIO_DTYPE", "float8")
    with pytest.raises(ValueError, match=r"STUDIO_DTYPE='float8'.*auto, fp16, bf16, fp32"):
        WorkerConfig.from_env()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_at_startup(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cuda:0")
    with pytest.raises(ValueError, match="no CUDA device"):
        WorkerConfig.from_env()


def test_config_is_frozen():
    config = WorkerConfig(device="cpu", dtype=torch.float32)
    with pytest.raises(AttributeError):
        config.device = "cuda"


def test_lora_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_MAX_LOADED_LORAS", "3")
    monkeypatch.setenv("STUDIO_MAX_LORA_RANK", "64")
    config = WorkerConfig.from_env()
    assert (config.max_loaded_loras, config.max_lora_rank) == (3, 64)


@pytest.mark.parametrize(
    ("device", "bf16_supported", "dtypes"),
    [
        ("cuda", True, (torch.float16, torch.bfloat16)),
        ("cuda:1", True, (torch.float16, torch.bfloat16)),
        ("cuda", False, (torch.float16, None)),
        ("cpu", True, (torch.float32, None)),
    ],
)
def test_auto_runs_flow_families_in_bf16_on_a_gpu_that_has_it(
    monkeypatch, device, bf16_supported, dtypes
):
    """FLUX.1's and SD 3.x's transformers and T5 overflow fp16; SD and SDXL stay in fp16."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    assert choose_dtypes(device, "auto") == dtypes


def test_a_gpu_without_bf16_runs_flow_families_in_fp16_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with caplog.at_level(logging.WARNING, logger="gpu_workers.config"):
        choose_dtypes("cuda", "auto")
    assert "FLUX.1 and SD 3.x models run in fp16" in caplog.text


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp32"])
def test_an_explicit_dtype_holds_for_every_family(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    dtype, flow_dtype = choose_dtypes("cuda", name)
    config = WorkerConfig(device="cuda", dtype=dtype, flow_dtype=flow_dtype)
    assert config.model_dtype(flow=True) == config.model_dtype(flow=False) == DTYPES[name]


def test_model_dtype_is_the_flow_dtype_for_flow_families_only():
    config = WorkerConfig(device="cuda", dtype=torch.float16, flow_dtype=torch.bfloat16)
    assert (config.model_dtype(flow=True), config.model_dtype(flow=False)) == (
        torch.bfloat16,
        torch.float16,
    )


def test_fp8_transformer_from_the_environment(monkeypatch):
    assert WorkerConfig.from_env().fp8_transformer is False
    monkeypatch.setenv("STUDIO_FP8_TRANSFORMER", "1")
    assert WorkerConfig.from_env().fp8_transformer is True
    monkeypatch.setenv("STUDIO_FP8_TRANSFORMER", "fp8")
    with pytest.raises(ValueError, match="STUDIO_FP8_TRANSFORMER='fp8' is not a switch"):
        WorkerConfig.from_env()


def test_fp8_transformer_and_compile_are_refused_together(monkeypatch):
    monkeypatch.setenv("STUDIO_FP8_TRANSFORMER", "1")
    monkeypatch.setenv("STUDIO_COMPILE", "1")
    with pytest.raises(
        ValueError, match="STUDIO_FP8_TRANSFORMER=1 does not work with STUDIO_COMPILE=1"
    ):
        WorkerConfig.from_env()
