"""LoRA files: checked and described from their `.safetensors` header, never loaded.

`read_lora_file(path, file_name)` refuses anything that is not a LoRA in a valid
`.safetensors` file (pickles, renamed or not, cut-short files, damaged headers, full
checkpoints) or a LoRA no worker can run (kohya's SD 3.x layout, FLUX.2's) with a message
that says what to do, and otherwise returns what the header tells: the layout (kohya,
diffusers/peft or XLabs), the base model family, the rank, trigger words, the training
resolution. Only the header is read (`safetensors.safe_open` maps the
file; tensor shapes come from the header); no tensor is loaded and nothing here imports
torch, so web nodes run it.
"""

import hashlib
import json
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gpu_workers.lora_families import DOWN_MARKERS, FLUX2, KOHYA_SD3_MARKER, SD3, lora_family
from gpu_workers.safetensors_header import SafetensorsHeaderError, safetensors_header_read

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})
# Metadata values kept with the library entry (the full header stays in the file).
METADATA_VALUE_CHARS = 300
TRIGGER_WORDS = 10


class LoraFileError(ValueError):
    """The file is not a LoRA the studio accepts; the message says why and what to do."""


@dataclass
class LoraInfo:
    layout: str  # "kohya", "diffusers" (peft / diffusers names) or "xlabs"
    family: str | None  # "sd15", "sd2", "sdxl", "flux1", "sd3"; None: the header does not tell
    family_evidence: str  # how the family was found, for messages ("" when unknown)
    rank: int | None
    alpha: float | None
    trigger_words: list[str] = field(default_factory=list)
    resolution: str = ""  # "512x512"
    base_model: str = ""  # the model it was trained on, as the metadata names it
    title: str = ""  # a name the metadata suggests
    tensor_count: int = 0
    metadata: dict = field(default_factory=dict)  # short metadata values, for the detail page
    addnet_hash: str = ""  # what A1111 and Civitai know the file by (a1111_lora_hash)

    @property
    def family_is_certain(self):
        """Read from tensor shapes or key names, not merely from metadata."""
        return self.family is not None and not self.family_evidence.startswith("metadata")


def refuse_by_name(file_name):
    """Refuse a file whose name is not `.safetensors` (pickles get their own reason)."""
    name = Path(file_name or "").name or "The file"
    suffix = Path(name).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise LoraFileError(
            f"{name} is a pickle-based file ({suffix}). The studio accepts LoRAs only as "
            ".safetensors, because opening a pickle can run any code on the server: convert "
            "it to .safetensors (kohya's and diffusers' tools do) and upload that."
        )
    if suffix != ".safetensors":
        raise LoraFileError(
            f"{name} is not a .safetensors file. Upload the LoRA's .safetensors file "
            "(.ckpt, .pt and .bin files are refused)."
        )


def read_lora_file(path, file_name=""):
    """A LoraInfo for the `.safetensors` LoRA at `path`, or a LoraFileError."""
    name = Path(file_name or str(path)).name
    refuse_by_name(name)
    _read_header(Path(path), name)
    keys, shapes, metadata = _open_checked(path, name)
    if not keys:
        raise LoraFileError(f"{name} holds no tensors, so it is not a LoRA.")
    _refuse_non_lora(keys, name)
    layout = _layout(keys)
    family, evidence = detect_family(shapes, metadata)
    if family == FLUX2:
        raise LoraFileError(
            f"{name} is a FLUX.2 LoRA ({evidence}), a model family the studio does not run: "
            "its LoRAs can't be used with FLUX.1 models."
        )
    if family == SD3 and any(KOHYA_SD3_MARKER.search(key) for key in keys):
        raise LoraFileError(
            f"{name} is a Stable Diffusion 3.x LoRA in kohya's / Stability's layout "
            "(joint_blocks), which the studio's workers can't read: diffusers loads SD 3.x "
            "LoRAs only in its own layout (transformer.transformer_blocks.N.…lora_A.weight, "
            "as diffusers' and ai-toolkit's trainers save them). Upload it in that layout."
        )
    info = LoraInfo(
        layout=layout,
        family=family,
        family_evidence=evidence,
        rank=_rank(keys, shapes, metadata),
        alpha=_float(metadata.get("ss_network_alpha")),
        trigger_words=trigger_words(metadata),
        resolution=training_resolution(metadata),
        base_model=_base_model(metadata),
        title=(metadata.get("modelspec.title") or metadata.get("ss_output_name") or "").strip(),
        tensor_count=len(keys),
        metadata=short_metadata(metadata),
        addnet_hash=a1111_lora_hash(path, metadata),
    )
    return info


SHA256_HEX = re.compile(r"[0-9a-f]{64}")
HASH_BLOCK_BYTES = 1024 * 1024


def addnet_hash(opened):
    """kohya's "addnet" hash, as A1111 computes it (modules/hashes.py
    addnet_hash_safetensors): the SHA-256 of the bytes after the 8-byte header length and
    the header, so editing the metadata does not change it."""
    opened.seek(0)
    header_size = int.from_bytes(opened.read(8), "little")
    opened.seek(8 + header_size)
    digest = hashlib.sha256()
    for block in iter(lambda: opened.read(HASH_BLOCK_BYTES), b""):
        digest.update(block)
    return digest.hexdigest()


def a1111_lora_hash(path, metadata):
    """The hash A1111 writes in "Lora hashes" (extensions-builtin/Lora/network.py): the
    file's `sshs_model_hash` (kohya's trainer stores its addnet hash there), else the
    addnet hash of the file."""
    written = str(metadata.get("sshs_model_hash", "")).strip().lower()
    if SHA256_HEX.fullmatch(written):
        return written
    with open(path, "rb") as opened:
        return addnet_hash(opened)


# -- The container ------------------------------------------------------------------------


def _read_header(path, name):
    """The JSON header, checked against the file's size: a clear message for files that
    are pickles, cut short or damaged, before safetensors' own checks."""
    size = path.stat().st_size
    if size == 0:
        raise LoraFileError(f"{name} is empty.")
    with path.open("rb") as opened:
        start = opened.read(9)
        # A safetensors header is a JSON object right after its 8-byte length; a pickle
        # starts with its protocol (0x80, 2..5), torch's zip format with "PK".
        looks_pickled = start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
        if start[8:9] != b"{" and (looks_pickled or start[:4] == b"PK\x03\x04"):
            raise LoraFileError(
                f"{name} is not a safetensors file: it is a pickled PyTorch file (.ckpt/.pt) "
                "with its name changed. The studio never opens pickles, because that can run "
                "any code: convert it to .safetensors and upload that."
            )
    if len(start) < 9:
        raise LoraFileError(f"{name} is cut short: it ends inside its header.")
    try:
        header = safetensors_header_read(path, name=name)
    except SafetensorsHeaderError as error:
        raise LoraFileError(str(error)) from error
    header_size = struct.unpack("<Q", start[:8])[0]
    try:
        ends = [
            int(entry["data_offsets"][1])
            for key, entry in header.items()
            if key != "__metadata__"
        ]
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise LoraFileError(
            f"{name} has a damaged header ({str(error)[:80]}): it is not a valid safetensors "
            "file."
        ) from error
    expected = 8 + header_size + max(ends, default=0)
    if size < expected:
        raise LoraFileError(
            f"{name} is cut short: its header announces {expected:,} bytes but the file has "
            f"{size:,}. Upload the whole file again."
        )
    return header


def _open_checked(path, name):
    """Tensor names, their shapes and the metadata, through safetensors' own validation."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as opened:
            keys = list(opened.keys())
            shapes = {key: list(opened.get_slice(key).get_shape()) for key in keys}
            metadata = dict(opened.metadata() or {})
    except Exception as error:  # SafetensorError: what the library found wrong
        raise LoraFileError(
            f"{name} is not a valid safetensors file ({str(error)[:120]})."
        ) from error
    return keys, shapes, metadata


def _refuse_non_lora(keys, name):
    if any(key.endswith(DOWN_MARKERS) for key in keys):
        return
    if any(key.startswith(("model.diffusion_model.", "conditioner.")) for key in keys) or any(
        key.startswith(("down_blocks.", "unet.down_blocks.")) and ".lora" not in key
        for key in keys
    ):
        raise LoraFileError(
            f"{name} is a full model, not a LoRA: site staff add checkpoints in the Model "
            "library."
        )
    if any(key in ("emb_params", "string_to_param") or key.startswith("clip_") for key in keys):
        raise LoraFileError(
            f"{name} is a textual-inversion embedding, not a LoRA; embeddings can't be "
            "uploaded here yet."
        )
    raise LoraFileError(
        f"{name} holds no LoRA weights (no lora_down / lora_A tensors). LyCORIS variants "
        "(LoHa, LoKr) and other adapters are not supported."
    )


# -- What the header tells ----------------------------------------------------------------


def detect_family(shapes, metadata):
    """(family, evidence) from tensor names and shapes first (gpu_workers.lora_families),
    then the kohya / modelspec metadata; (None, "") when nothing tells."""
    family, evidence = lora_family(shapes)
    if family:
        return family, evidence
    family = _metadata_family(metadata)
    if family:
        return family, "metadata"
    return None, ""


def _layout(keys):
    # kohya's names, or ComfyUI's with kohya's lora_down / lora_up.
    if any(key.startswith("lora_") or key.endswith(".lora_down.weight") for key in keys):
        return "kohya"
    if any(".processor." in key and key.endswith(DOWN_MARKERS) for key in keys):
        return "xlabs"
    return "diffusers"


def _metadata_family(metadata):
    version = (metadata.get("ss_base_model_version") or "").lower()
    architecture = (metadata.get("modelspec.architecture") or "").lower()
    model_name = (metadata.get("ss_sd_model_name") or "").lower()
    # sd-scripts writes "flux1" / "sd3" and modelspec "flux-1-dev/lora",
    # "stable-diffusion-v3.5-large/lora"; ai-toolkit "flux.1".
    if version.startswith(("flux1", "flux.1")) or architecture.startswith("flux-1"):
        return "flux1"
    if version.startswith("sd3") or architecture.startswith("stable-diffusion-v3"):
        return "sd3"
    if "flux1" in model_name or "flux.1" in model_name:
        return "flux1"
    if model_name.startswith(("sd3", "sd_3")):
        return "sd3"
    if version.startswith("sdxl") or "stable-diffusion-xl" in architecture:
        return "sdxl"
    if version.startswith("sd_v2") or architecture.startswith("stable-diffusion-v2"):
        return "sd2"
    if str(metadata.get("ss_v2", "")).lower() == "true":
        return "sd2"
    if version.startswith("sd_v1") or architecture.startswith("stable-diffusion-v1"):
        return "sd15"
    if "xl" in model_name:
        return "sdxl"
    if model_name and re.search(r"(^|[^0-9])(1[._-]?5|v1)", model_name):
        return "sd15"
    return None


def _rank(keys, shapes, metadata):
    declared = str(metadata.get("ss_network_dim", ""))
    # At most 9 digits: what the rank column (32-bit) holds; else the shapes say it.
    if declared.isdecimal() and len(declared) <= 9 and int(declared) > 0:
        return int(declared)
    ranks = Counter(
        shapes[key][0] for key in keys if key.endswith(DOWN_MARKERS) and shapes[key]
    )
    return ranks.most_common(1)[0][0] if ranks else None


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def trigger_words(metadata, limit=TRIGGER_WORDS):
    """The trigger phrase the metadata names, else the training captions' most frequent
    tags (kohya's ss_tag_frequency: {dataset folder: {tag: count}})."""
    phrase = (metadata.get("modelspec.trigger_phrase") or "").strip()
    if phrase:
        return [word.strip() for word in phrase.split(",") if word.strip()][:limit]
    try:
        frequencies = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except ValueError:
        return []
    counts = Counter()
    if isinstance(frequencies, dict):
        for tags in frequencies.values():
            if not isinstance(tags, dict):
                continue
            for tag, count in tags.items():
                tag = str(tag).strip()
                if tag and isinstance(count, (int, float)):
                    counts[tag] += count
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [tag for tag, _ in ranked[:limit]]


def training_resolution(metadata):
    """"512x512" from ss_resolution ("(512, 512)", "512", "[1024,1024]") or modelspec."""
    for key in ("ss_resolution", "modelspec.resolution"):
        numbers = [int(n) for n in re.findall(r"\d+", metadata.get(key) or "")]
        if len(numbers) == 1:
            return f"{numbers[0]}x{numbers[0]}"
        if len(numbers) >= 2:
            return f"{numbers[0]}x{numbers[1]}"
    return ""


def _base_model(metadata):
    for key in ("ss_sd_model_name", "modelspec.architecture", "ss_base_model_version"):
        value = (metadata.get(key) or "").strip()
        if value:
            return value[:200]
    return ""


def short_metadata(metadata):
    """Metadata worth showing: short values only (tag lists and dataset dumps stay in the
    file)."""
    kept = {}
    for key, value in sorted(metadata.items()):
        text = str(value)
        if key in ("ss_tag_frequency", "ss_dataset_dirs", "ss_datasets", "ss_bucket_info"):
            continue
        if len(text) > METADATA_VALUE_CHARS:
            text = text[: METADATA_VALUE_CHARS - 1] + "…"
        kept[key[:100]] = text
        if len(kept) >= 60:
            break
    return kept
