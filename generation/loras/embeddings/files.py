"""Textual-inversion embedding files: checked and described from their `.safetensors`
header, never loaded, with the LoRA upload rules (generation.loras.files): `.safetensors`
only, pickles refused by name and by content, cut-short and damaged headers refused.

Layouts: A1111's (`emb_params`: vectors × width), diffusers' (one tensor named by its
token) and SDXL's (`clip_l` and `clip_g`, one per text encoder). The base family follows
from the width of the vectors: 768 is SD 1.x's CLIP ViT-L, 1024 SD 2.x's OpenCLIP ViT-H.
No torch here: web nodes run it.
"""

from dataclasses import dataclass
from pathlib import Path

from generation.loras.files import PICKLE_SUFFIXES, LoraFileError, _read_header

WIDTH_FAMILY = {768: "sd15", 1024: "sd2"}
SDXL_WIDTHS = {"clip_l": 768, "clip_g": 1280}
# A prompt holds 75 tokens per chunk; an embedding longer than that leaves no room.
MAX_VECTORS = 75


class EmbeddingFileError(ValueError):
    """The file is not an embedding the studio accepts; the message says why."""


@dataclass
class EmbeddingInfo:
    layout: str  # "a1111", "diffusers" or "sdxl"
    family: str  # "sd15", "sd2", "sdxl"
    vectors: int  # tokens it stands for in a prompt
    token: str = ""  # the name a diffusers file gives it


def read_embedding_file(path, file_name=""):
    """An EmbeddingInfo for the `.safetensors` embedding at `path`, or an
    EmbeddingFileError."""
    name = Path(file_name or str(path)).name
    suffix = Path(name).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise EmbeddingFileError(
            f"{name} is a pickle-based file ({suffix}). The studio accepts embeddings only as "
            ".safetensors, because opening a pickle can run any code on the server: convert "
            "it to .safetensors and upload that."
        )
    if suffix != ".safetensors":
        raise EmbeddingFileError(f"{name} is not a .safetensors file.")
    try:
        header = _read_header(Path(path), name)
    except LoraFileError as error:
        raise EmbeddingFileError(str(error)) from error
    shapes = {key: entry.get("shape") for key, entry in header.items() if key != "__metadata__"}
    if SDXL_WIDTHS.keys() <= shapes.keys():
        counts = {key: _vectors(shapes[key], name) for key in SDXL_WIDTHS}
        for key, width in SDXL_WIDTHS.items():
            if counts[key][1] != width:
                raise EmbeddingFileError(
                    f"{name}'s {key} vectors are {counts[key][1]} wide; SDXL's are {width}."
                )
        if counts["clip_l"][0] != counts["clip_g"][0]:
            raise EmbeddingFileError(f"{name} has unequal numbers of clip_l and clip_g vectors.")
        return EmbeddingInfo("sdxl", "sdxl", counts["clip_l"][0])
    if "emb_params" in shapes:
        layout, token, shape = "a1111", "", shapes["emb_params"]
    elif len(shapes) == 1:
        (token, shape), layout = next(iter(shapes.items())), "diffusers"
    else:
        raise EmbeddingFileError(
            f"{name} is not a textual-inversion embedding: it holds {len(shapes)} tensors. "
            "Embeddings hold emb_params (A1111), one token's vectors (diffusers) or clip_l "
            "and clip_g (SDXL). Is it a LoRA? Those go in the LoRA library."
        )
    vectors, width = _vectors(shape, name)
    family = WIDTH_FAMILY.get(width)
    if family is None:
        raise EmbeddingFileError(
            f"{name}'s vectors are {width} wide, which fits no model family the studio runs "
            "(768: SD 1.x, 1024: SD 2.x; SDXL embeddings hold clip_l and clip_g)."
        )
    return EmbeddingInfo(layout, family, vectors, token)


def _vectors(shape, name):
    """(vectors, width) of a tensor's shape: (width,) or (vectors, width)."""
    if not isinstance(shape, list) or len(shape) not in (1, 2) or not all(
        isinstance(size, int) and size > 0 for size in shape
    ):
        raise EmbeddingFileError(
            f"{name} holds a tensor of shape {shape}, not vectors (count × width)."
        )
    vectors, width = (1, shape[0]) if len(shape) == 1 else shape
    if vectors > MAX_VECTORS:
        raise EmbeddingFileError(
            f"{name} has {vectors} vectors; at most {MAX_VECTORS} fit in a prompt."
        )
    return vectors, width
