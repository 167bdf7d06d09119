"""AUTOMATIC1111's `<lora:name:weight>` prompt syntax: found, checked and taken out.

A tag names a LoRA from the team's library and, optionally, its weight (1 when left out).
The job keeps the prompt as the user wrote it (as A1111's infotext does); the text encoder
gets it with every tag removed, exactly as A1111 removes them (nothing else changes).
"""

import math
import re
from dataclasses import dataclass

LORA_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)
LORA_TAG_START = re.compile(r"<lora:", re.IGNORECASE)
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0


class LoraSyntaxError(ValueError):
    """A tag that can't be read; the message shows it and how to write it."""


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float
    text: str  # the tag as written


def check_weight(weight, name):
    """The weight as a float in MIN_WEIGHT..MAX_WEIGHT, or a LoraSyntaxError naming the LoRA."""
    if not math.isfinite(weight) or not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise LoraSyntaxError(
            f"The weight of LoRA “{name}” is {weight:g}: use a weight from {MIN_WEIGHT:g} to "
            f"{MAX_WEIGHT:g} (1 is full strength, negative weights invert it)."
        )
    return weight


def parse_lora_tags(prompt):
    """The prompt's `<lora:…>` tags, in order, each read and its weight checked."""
    tags = []
    for match in LORA_TAG.finditer(prompt or ""):
        text = match.group(0)
        name, *rest = (part.strip() for part in match.group(1).split(":"))
        if not name:
            raise LoraSyntaxError(
                f"{text} names no LoRA: write <lora:name> or <lora:name:weight>."
            )
        if len(rest) > 1:
            raise LoraSyntaxError(
                f"{text}: one weight per LoRA (separate text-encoder and UNet weights are not "
                f"supported). Write <lora:{name}:0.8>."
            )
        weight = 1.0
        if rest:
            try:
                weight = float(rest[0])
            except ValueError:
                raise LoraSyntaxError(
                    f"{text}: “{rest[0]}” is not a weight. Write a number, e.g. "
                    f"<lora:{name}:0.8>."
                ) from None
        tags.append(LoraTag(name=name, weight=check_weight(weight, name), text=text))
    # What is left: a "<lora:" that never closes.
    leftover = LORA_TAG.sub("", prompt or "")
    if LORA_TAG_START.search(leftover):
        raise LoraSyntaxError(
            "A <lora: tag in the prompt is not closed: write <lora:name:weight> with the “>”."
        )
    return tags


def prompt_without_lora_tags(prompt):
    """The text the encoder gets: every `<lora:…>` tag removed, as A1111 removes them."""
    return LORA_TAG.sub("", prompt or "")
