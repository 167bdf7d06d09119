"""Finding the model an image names in the studio's library."""

import re

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def _model_key(name):
    base = re.split(r"[\\/]", name.strip())[-1].lower()
    for suffix in MODEL_SUFFIXES:
        base = base.removesuffix(suffix)
    return base


def match_model(name, models):
    """The model of `models` that `name` refers to: the library name itself, or the file
    or folder name of its source (A1111 writes checkpoints without their extension,
    ComfyUI with their folder and extension)."""
    if not name:
        return None
    models = list(models)
    for model in models:
        if model.name.lower() == name.strip().lower():
            return model
    wanted = _model_key(name)
    for model in models:
        if wanted in (_model_key(model.name), _model_key(model.source)):
            return model
    return None
