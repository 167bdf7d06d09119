"""Variation seeds (A1111's): close variations of a seed's image, none at strength 0, the
variation seed's own image at strength 1."""

import dataclasses

import numpy as np
import pytest

from gpu_workers.runner import generate, generate_all


def pixels(request, config):
    return np.asarray(generate(request, config=config).images[0]).astype(int)


def test_strength_zero_changes_nothing(tiny_request, cpu_config):
    varied = dataclasses.replace(tiny_request, variation_seed=99, variation_strength=0.0)
    assert np.array_equal(pixels(varied, cpu_config), pixels(tiny_request, cpu_config))


def test_strength_one_is_the_variation_seeds_image(tiny_request, cpu_config):
    varied = dataclasses.replace(tiny_request, variation_seed=99, variation_strength=1.0)
    other_seed = dataclasses.replace(tiny_request, seed=99)
    assert np.abs(pixels(varied, cpu_config) - pixels(other_seed, cpu_config)).max() <= 1


def test_a_small_strength_stays_close_to_the_seeds_image(tiny_request, cpu_config):
    original = pixels(tiny_request, cpu_config)

    def distance(strength):
        varied = dataclasses.replace(tiny_request, variation_seed=99, variation_strength=strength)
        return np.abs(pixels(varied, cpu_config) - original).mean()

    assert 0 < distance(0.1) < distance(0.6)


def test_in_a_batch_only_the_varied_rows_change(tiny_request, cpu_config):
    varied = dataclasses.replace(tiny_request, variation_seed=7, variation_strength=0.5)
    batched = generate_all([tiny_request, varied], config=cpu_config)
    plain = np.asarray(batched[0].images[0]).astype(int)
    assert np.array_equal(plain, pixels(tiny_request, cpu_config))
    assert not np.array_equal(plain, np.asarray(batched[1].images[0]).astype(int))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variation_strength": 1.5}, "variation_strength must be 0 to 1"),
        ({"variation_strength": 0.5, "init_image": "image"}, "txt2img only"),
    ],
)
def test_bad_variations_are_refused(tiny_request, cpu_config, change, message):
    with pytest.raises(ValueError, match=message):
        generate(dataclasses.replace(tiny_request, **change), config=cpu_config)
