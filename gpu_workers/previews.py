"""Cheap step previews: a fixed linear map from SD1.5 or SDXL latents to RGB, no VAE decode."""

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
# ComfyUI's latent2rgb factors and bias for the SDXL VAE.
SDXL_LATENT_RGB_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_LATENT_RGB_BIAS = (0.1084, -0.0175, -0.0011)


def latent_preview(latent: torch.Tensor, family: str | None = None) -> Image.Image:
    """An RGB image at latent resolution (1/8 of the output size) from one (4, h, w) latent
    of a model of `family` ("sdxl"; anything else: SD1.5's VAE)."""
    sdxl = family == "sdxl"
    factors = SDXL_LATENT_RGB_FACTORS if sdxl else SD15_LATENT_RGB_FACTORS
    factors = torch.tensor(factors, device=latent.device, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent.float(), factors)
    if sdxl:
        rgb = rgb + torch.tensor(SDXL_LATENT_RGB_BIAS, device=latent.device)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(pixels.cpu().numpy())
