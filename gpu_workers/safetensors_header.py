"""The JSON header of a `.safetensors` file, read under caps far below safetensors' own
(100 MB): every header the studio parses (LoRAs, embeddings, checkpoints, IP-Adapters, on
web nodes and workers) is read here first.

A header's bytes and its tensor count are checked before it is parsed: a 100 MB header or
a million tiny tensors would otherwise cost seconds of CPU and gigabytes of dicts. Real
files sit far below the defaults: an SDXL checkpoint has about 2,500 tensors in a header
of under 300 kB, a LoRA a few hundred to a few thousand.

STUDIO_MAX_SAFETENSORS_HEADER_BYTES (default 16 MiB) and STUDIO_MAX_SAFETENSORS_TENSORS
(default 20,000) are read from the environment, so web nodes and workers share them.
"""

import json
import os
import struct
from pathlib import Path

DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_TENSORS = 20_000


class SafetensorsHeaderError(ValueError):
    """The header is over a cap, cut short or damaged; the message names the file and
    the limit."""


def header_limits():
    """(max header bytes, max tensors) from the environment."""
    return (
        int(os.environ.get("STUDIO_MAX_SAFETENSORS_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES)),
        int(os.environ.get("STUDIO_MAX_SAFETENSORS_TENSORS", DEFAULT_MAX_TENSORS)),
    )


def safetensors_header_read(path, *, name=None):
    """The parsed header (a dict, `__metadata__` included) of the file at `path`, or a
    SafetensorsHeaderError: its length is checked against the byte cap before it is read,
    and its tensors are counted against the tensor cap before it is parsed."""
    path = Path(path)
    name = name or path.name
    max_bytes, max_tensors = header_limits()
    with path.open("rb") as opened:
        start = opened.read(8)
        if len(start) < 8:
            raise SafetensorsHeaderError(f"{name} is cut short: it ends inside its header.")
        (header_size,) = struct.unpack("<Q", start)
        if header_size > max_bytes:
            raise SafetensorsHeaderError(
                f"{name}'s header is {header_size:,} bytes; at most {max_bytes:,} are accepted "
                "(STUDIO_MAX_SAFETENSORS_HEADER_BYTES). Real models and LoRAs need far less."
            )
        raw = opened.read(header_size)
    if len(raw) < header_size:
        raise SafetensorsHeaderError(
            f"{name} is cut short: it ends inside its header. Upload the whole file again."
        )
    # Each tensor's entry has one "data_offsets" key, and the quoted word can't appear
    # unescaped inside a JSON string: counting it counts the tensors without parsing (a
    # crafted header can only make it count more).
    tensors_refuse_past_cap(raw.count(b'"data_offsets"'), max_tensors, name=name)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise SafetensorsHeaderError(
            f"{name} has a damaged header ({str(error)[:80]}): it is not a valid safetensors "
            "file."
        ) from error
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(
            f"{name} has a damaged header (not a JSON object): it is not a valid safetensors "
            "file."
        )
    # Keys written with escapes ("data\u005foffsets") slip past the count before parsing.
    tensors_refuse_past_cap(len(header) - ("__metadata__" in header), max_tensors, name=name)
    return header


def tensors_refuse_past_cap(tensors, max_tensors, *, name):
    if tensors > max_tensors:
        raise SafetensorsHeaderError(
            f"{name} holds {tensors:,} tensors; at most {max_tensors:,} are accepted "
            "(STUDIO_MAX_SAFETENSORS_TENSORS). An SDXL checkpoint has about 2,500."
        )
