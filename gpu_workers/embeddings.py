"""Textual-inversion embeddings on a worker: loaded into the text encoders (diffusers'
load_textual_inversion) for the batch that names them, and unloaded after it, so the next
batch on the worker tokenises and encodes exactly as the model alone does.

A1111's convention: an embedding is used where its name is a word of the prompt or the
negative prompt. Files are A1111's (`emb_params`), diffusers' (one tensor named by its
token) or SDXL's (`clip_l` and `clip_g`, one per text encoder).
"""

import contextlib
import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load

from gpu_workers.pipelines import SDXL, pipeline_family
from gpu_workers.requests import EmbeddingRef, GenerationFailed


def embedding_vectors(data: bytes, *, sdxl: bool) -> tuple[torch.Tensor, ...]:
    """The vectors of an embedding file's bytes per text encoder, each (vectors, width): one
    tensor for SD, two (CLIP L, then OpenCLIP bigG) for SDXL."""
    tensors = load(data)
    if sdxl:
        if not {"clip_l", "clip_g"} <= tensors.keys():
            raise ValueError("it has no clip_l and clip_g vectors, as SDXL embeddings have")
        vectors = (tensors["clip_l"], tensors["clip_g"])
    elif "emb_params" in tensors:
        vectors = (tensors["emb_params"],)
    elif len(tensors) == 1:
        vectors = tuple(tensors.values())
    else:
        raise ValueError("it holds neither emb_params nor a single token's vectors")
    return tuple(vector.reshape(-1, vector.shape[-1]) for vector in vectors)


def _checked_bytes(embedding: EmbeddingRef) -> bytes:
    try:
        data = Path(embedding.source).read_bytes()
    except FileNotFoundError as error:
        raise GenerationFailed(
            f"The embedding {embedding.name} is missing from storage."
        ) from error
    if hashlib.sha256(data).hexdigest() != embedding.sha256:
        raise GenerationFailed(
            f"The embedding {embedding.name} changed or is damaged since it was uploaded; "
            "upload it again."
        )
    return data


@contextlib.contextmanager
def embeddings_loaded(pipe, embeddings: tuple[EmbeddingRef, ...]):
    """The pipeline with `embeddings` loaded under their names; unloaded after, whatever
    happens inside."""
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    if pipeline_family(pipe) == SDXL:
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    loaded = []  # (tokens, tokenizer, text encoder)
    # Unloading shrinks the embedding matrix back but leaves the config's vocab_size grown.
    vocab_sizes = [text_encoder.config.vocab_size for _, text_encoder in encoders]
    try:
        for embedding in embeddings:
            data = _checked_bytes(embedding)
            try:
                vectors = embedding_vectors(data, sdxl=len(encoders) == 2)
                for (tokenizer, text_encoder), vector in zip(encoders, vectors, strict=True):
                    tokens = [embedding.name] + [
                        f"{embedding.name}_{n}" for n in range(1, vector.shape[0])
                    ]
                    pipe.load_textual_inversion(
                        vector.to(dtype=text_encoder.dtype),
                        token=embedding.name,
                        tokenizer=tokenizer,
                        text_encoder=text_encoder,
                    )
                    loaded.append((tokens, tokenizer, text_encoder))
            except (ValueError, RuntimeError, SafetensorError) as error:
                raise GenerationFailed(
                    f"The embedding {embedding.name} does not fit this model (is it made for "
                    f"another base model family?): {str(error)[:200]}"
                ) from error
        yield
    finally:
        for tokens, tokenizer, text_encoder in reversed(loaded):
            pipe.unload_textual_inversion(tokens, tokenizer=tokenizer, text_encoder=text_encoder)
        for (_, text_encoder), vocab_size in zip(encoders, vocab_sizes, strict=True):
            text_encoder.config.vocab_size = vocab_size
