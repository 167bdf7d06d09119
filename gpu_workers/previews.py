"""Cheap step previews: a fixed linear map from SD1.5 latents to RGB, no VAE decode."""

import torch
from PIL import Image

# Each latent channel's contribution to R, G, B: the factors behind AUTOMATIC1111's
# "Approx cheap" preview and ComfyUI's latent2rgb for SD1.5-family VAEs.
SD15_LATENT_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


def latent_preview(latent: torch.Tensor) -> Image.Image:
    """An RGB image at latent resolution (1/8 of the output size) from one (4, h, w) latent."""
    factors = torch.tensor(SD15_LATENT_RGB_FACTORS, device=latent.device, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent.float(), factors)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(pixels.cpu().numpy())
