"""Cheap previews of FLUX.1's and SD 3.x's 16-channel latents (issue #17): ComfyUI's linear
latent2rgb map per family, bias included; a 16-channel latent of a family not known yet
gets FLUX.1's map rather than failing its job."""

import numpy as np
import pytest
import torch

from gpu_workers.previews import (
    FLUX_LATENT_RGB_BIAS,
    FLUX_LATENT_RGB_FACTORS,
    SD3_LATENT_RGB_BIAS,
    SD3_LATENT_RGB_FACTORS,
    latent_preview,
)


def expected_pixel(factors, bias, channel):
    rgb = np.array(factors[channel]) + np.array(bias)
    return np.round(np.clip((rgb + 1) / 2, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("family", "factors", "bias"),
    [
        ("flux", FLUX_LATENT_RGB_FACTORS, FLUX_LATENT_RGB_BIAS),
        ("sd3", SD3_LATENT_RGB_FACTORS, SD3_LATENT_RGB_BIAS),
        (None, FLUX_LATENT_RGB_FACTORS, FLUX_LATENT_RGB_BIAS),
    ],
)
def test_a_16_channel_latent_maps_through_its_familys_factors(family, factors, bias):
    latent = torch.zeros(16, 3, 5)
    latent[4] = 1.0  # one channel lit: the preview is that channel's colour plus the bias

    preview = latent_preview(latent, family)

    assert preview.size == (5, 3)
    pixels = np.asarray(preview)
    assert (pixels == expected_pixel(factors, bias, 4)).all()


def test_the_two_families_maps_differ():
    latent = torch.zeros(16, 2, 2)
    latent[0] = 1.0

    assert (
        np.asarray(latent_preview(latent, "flux")).tolist()
        != np.asarray(latent_preview(latent, "sd3")).tolist()
    )
