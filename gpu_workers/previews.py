"""Cheap step previews: a fixed linear map from a model's latents to RGB, no VAE decode."""

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
# ComfyUI's latent2rgb factors and biases for the 16-channel VAEs of SD 3.x and FLUX.1
# (comfy/latent_formats.py, classes SD3 and Flux), on the latents as the transformer sees
# them: shifted and scaled, as diffusers' flow pipelines keep them.
SD3_LATENT_RGB_FACTORS = (
    (-0.0922, -0.0175, 0.0749),
    (0.0311, 0.0633, 0.0954),
    (0.1994, 0.0927, 0.0458),
    (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496),
    (-0.0006, 0.1104, 0.0309),
    (0.0978, 0.0306, 0.0427),
    (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669),
    (-0.0488, 0.0130, -0.0268),
    (0.0922, 0.0988, 0.0951),
    (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895),
    (-0.0069, -0.0030, -0.0810),
    (-0.0596, -0.0465, -0.0293),
    (-0.1448, -0.1463, -0.1189),
)
SD3_LATENT_RGB_BIAS = (0.2394, 0.2135, 0.1925)
FLUX_LATENT_RGB_FACTORS = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX_LATENT_RGB_BIAS = (-0.0329, -0.0718, -0.0851)

# Per family (gpu_workers.pipelines' names): the factors and the bias (None: none).
LATENT_RGB = {
    "sdxl": (SDXL_LATENT_RGB_FACTORS, SDXL_LATENT_RGB_BIAS),
    "sd3": (SD3_LATENT_RGB_FACTORS, SD3_LATENT_RGB_BIAS),
    "flux": (FLUX_LATENT_RGB_FACTORS, FLUX_LATENT_RGB_BIAS),
}


def latent_preview(latent: torch.Tensor, family: str | None = None) -> Image.Image:
    """An RGB image at latent resolution (1/8 of the output size) from one (channels, h, w)
    latent of a model of `family` ("sdxl"; "sd3" or "flux": 16 channels; anything else:
    SD1.5's VAE, or FLUX.1's for 16 channels)."""
    factors, bias = LATENT_RGB.get(family, (SD15_LATENT_RGB_FACTORS, None))
    if len(factors) != latent.shape[0]:
        # A family not known before its model loaded (a Hub id not in the cache): the
        # latents' channels tell a 16-channel VAE apart, if not which of the two.
        factors, bias = FLUX_LATENT_RGB_FACTORS, FLUX_LATENT_RGB_BIAS
    factors = torch.tensor(factors, device=latent.device, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent.float(), factors)
    if bias is not None:
        rgb = rgb + torch.tensor(bias, device=latent.device)
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(pixels.cpu().numpy())
