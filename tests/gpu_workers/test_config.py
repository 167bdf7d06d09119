import pytest
import torch

from gpu_workers.config import WorkerConfig


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("STUDIO_DEVICE", raising=False)
    monkeypatch.delenv("STUDIO_DTYPE", raising=False)
    monkeypatch.delenv("STUDIO_LORA_CACHE_DIR", raising=False)


def test_auto_picks_cuda_in_half_precision_or_cpu_in_full_precision():
    config = WorkerConfig.from_env()
    if torch.cuda.is_available():
        assert config == WorkerConfig(device="cuda", dtype=torch.float16)
    else:
        assert config == WorkerConfig(device="cpu", dtype=torch.float32)


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
