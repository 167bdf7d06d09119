"""Seeds as ComfyUI has them: any 64-bit unsigned number (torch's generators take them all).

A1111 and this studio pick random seeds below 2**32; ComfyUI's go up to 2**64 - 1, and its
images keep them, so every seed a user brings back must be one the studio can run.
"""

import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.functional import cached_property

SEED_LIMIT = 2**64  # seeds are 0 ≤ seed < SEED_LIMIT
MAX_SEED = SEED_LIMIT - 1
RANDOM_SEED_LIMIT = 2**32  # random seeds stay below this, as A1111's


def random_seed() -> int:
    return secrets.randbelow(RANDOM_SEED_LIMIT)


def seed_after(seed, count):
    """The seed `count` after `seed` (a batch's next images), wrapping past the largest."""
    return (seed + count) % SEED_LIMIT


class SeedField(models.BigIntegerField):
    """A seed from 0 to 2**64 - 1 in a signed 64-bit column: seeds from 2**63 up are kept
    2**64 lower (two's complement), and read back as they were. The column is a plain
    bigint, so migrations see a BigIntegerField and existing rows need nothing."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value - SEED_LIMIT if value is not None and value >= 2**63 else value

    def from_db_value(self, value, expression, connection):
        return value + SEED_LIMIT if value is not None and value < 0 else value

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.BigIntegerField", args, kwargs

    @cached_property
    def validators(self):
        # Not the column's signed range: the seeds' own.
        return [*self._validators, MinValueValidator(0), MaxValueValidator(MAX_SEED)]
