"""What a worker tells the studio about its GPU."""

import torch

from gpu_workers.config import WorkerConfig


def device_description(config: WorkerConfig | None = None) -> tuple[str, int | None]:
    """(the device's name, its total memory in bytes, or None for a CPU)."""
    device = torch.device((config or WorkerConfig.from_env()).device)
    if device.type != "cuda":
        return "CPU", None
    properties = torch.cuda.get_device_properties(device)
    return properties.name, properties.total_memory
