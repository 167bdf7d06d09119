"""Finding the model and the LoRAs an image names in the studio's library."""

import re

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
# A hash as images carry them: A1111's 10 (models) or 12 (LoRAs) hex digits, or a whole
# SHA-256. A1111's legacy 8-digit model hash is another algorithm: never compared.
HASH_PREFIX = re.compile(r"[0-9a-f]{10,64}")


def _model_key(name):
    base = re.split(r"[\\/]", name.strip())[-1].lower()
    for suffix in MODEL_SUFFIXES:
        base = base.removesuffix(suffix)
    return base


def _hash_prefix(value):
    value = str(value or "").strip().lower()
    return value if HASH_PREFIX.fullmatch(value) else ""


def match_model(name, models, model_hash=""):
    """The model of `models` that the image refers to: the one whose SHA-256 starts with
    `model_hash` (A1111's "Model hash"), else by name: the library name itself, or the
    file or folder name of its source (A1111 writes checkpoints without their extension,
    ComfyUI with their folder and extension)."""
    models = list(models)
    wanted_hash = _hash_prefix(model_hash)
    if wanted_hash:
        for model in models:
            if model.sha256.startswith(wanted_hash):
                return model
    if not name:
        return None
    for model in models:
        if model.name.lower() == name.strip().lower():
            return model
    wanted = _model_key(name)
    for model in models:
        if wanted in (_model_key(model.name), _model_key(model.source)):
            return model
    return None


def model_hash_note(model, model_hash):
    """A "not applied" note when the model matched by name is another file than the one
    the image's hash names; None when it is the same, or either hash is unknown."""
    wanted_hash = _hash_prefix(model_hash)
    if model is None or not wanted_hash or not model.sha256:
        return None
    if model.sha256.startswith(wanted_hash):
        return None
    return (
        f"Model hash: {wanted_hash[:10]} (the library's {model.name} is another file, "
        f"{model.a1111_hash()})"
    )


def lora_hashes_match(*, imported, loras):
    """Look up each LoRA the image names with its hash in `loras` (the team's): by hash
    (A1111's addnet hash, or the file's SHA-256 as this studio wrote it before), else by
    name. One found by hash under another name is called by that name in the prompt; one
    found by name only but with another hash, or not found, goes into not_applied."""
    loras = list(loras)
    for name, short_hash in imported.lora_hashes.items():
        wanted = _hash_prefix(short_hash)
        by_hash = next(
            (lora for lora in loras if wanted and _lora_has_hash(lora, wanted)), None
        )
        by_name = next((lora for lora in loras if lora.name.lower() == name.lower()), None)
        if by_hash is not None:
            if by_hash.name.lower() != name.lower() and "prompt" in imported.values:
                imported.values["prompt"] = re.sub(
                    rf"<lora:{re.escape(name)}(?=[:>])",
                    f"<lora:{by_hash.name}".replace("\\", "\\\\"),
                    imported.values["prompt"],
                    flags=re.IGNORECASE,
                )
        elif by_name is not None:
            if wanted:
                imported.report(
                    "Lora hashes",
                    f"{name}: {short_hash} (the library's {by_name.name} is another file)",
                )
        else:
            imported.report("LoRA", f"{name} (not in your team's library)")


def _lora_has_hash(lora, wanted):
    return lora.addnet_hash.startswith(wanted) or lora.sha256.startswith(wanted)
