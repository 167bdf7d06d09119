"""Textual-inversion embeddings through the engine: the name in the prompt calls up the
vectors (SD1.5 and SDXL), they leave the text encoders after their batch, and files that
do not fit fail the job without leaving anything behind."""

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gpu_workers.engine import BatchKey
from gpu_workers.pipelines import load_pipeline
from gpu_workers.requests import EmbeddingRef, GenerationFailed
from gpu_workers.runner import generate


def embedding_file(path, **tensors):
    """A `.safetensors` embedding with `tensors`, seeded random vectors of the given shapes."""
    generator = torch.Generator().manual_seed(5)
    save_file(
        {name: torch.randn(shape, generator=generator) for name, shape in tensors.items()}, path
    )
    return EmbeddingRef(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), source=str(path), name="mystyle"
    )


def pixels(result):
    return np.asarray(result.images[0], dtype=int)


@pytest.fixture
def styled_request(tiny_request):
    return dataclasses.replace(tiny_request, prompt="a cat on the mat, mystyle")


@pytest.mark.parametrize(
    "tensors", [{"emb_params": (2, 32)}, {"mystyle": (32,)}], ids=["a1111", "diffusers"]
)
def test_the_name_calls_up_the_vectors_and_nothing_is_left_after(
    styled_request, cpu_config, tmp_path, tensors
):
    embedding = embedding_file(tmp_path / "mystyle.safetensors", **tensors)
    plain = pixels(generate(styled_request, config=cpu_config))
    styled_request_with = dataclasses.replace(styled_request, embeddings=(embedding,))

    styled = pixels(generate(styled_request_with, config=cpu_config))
    again = pixels(generate(styled_request_with, config=cpu_config))
    after = pixels(generate(styled_request, config=cpu_config))

    assert not np.array_equal(plain, styled)
    assert np.array_equal(styled, again)  # loaded afresh, the same vectors
    assert np.array_equal(plain, after)
    pipe = load_pipeline(styled_request.model_source, cpu_config)
    vocabulary = len(pipe.tokenizer)
    assert pipe.text_encoder.get_input_embeddings().num_embeddings == vocabulary
    assert pipe.text_encoder.config.vocab_size == vocabulary


def test_sdxl_embeddings_fill_both_text_encoders(
    styled_request, tiny_sdxl_model_dir, cpu_config, tmp_path
):
    embedding = embedding_file(tmp_path / "xl.safetensors", clip_l=(2, 32), clip_g=(2, 48))
    request = dataclasses.replace(styled_request, model_source=str(tiny_sdxl_model_dir))
    plain = pixels(generate(request, config=cpu_config))
    styled_request_with = dataclasses.replace(request, embeddings=(embedding,))
    styled = pixels(generate(styled_request_with, config=cpu_config))
    assert not np.array_equal(plain, styled)
    assert np.array_equal(plain, pixels(generate(request, config=cpu_config)))


def test_embeddings_split_batches(styled_request, tmp_path):
    embedding = embedding_file(tmp_path / "e.safetensors", emb_params=(1, 32))
    with_embedding = dataclasses.replace(styled_request, embeddings=(embedding,))
    assert BatchKey.for_request(with_embedding) != BatchKey.for_request(styled_request)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [({"emb_params": (2, 48)}, "does not fit this model"), ({"a": (4,), "b": (4,)}, "neither")],
)
def test_an_embedding_that_does_not_fit_fails_and_leaves_the_model_clean(
    styled_request, cpu_config, tmp_path, tensors, message
):
    embedding = embedding_file(tmp_path / "bad.safetensors", **tensors)
    before = pixels(generate(styled_request, config=cpu_config))
    with pytest.raises(GenerationFailed, match=message):
        generate(dataclasses.replace(styled_request, embeddings=(embedding,)), config=cpu_config)
    assert np.array_equal(before, pixels(generate(styled_request, config=cpu_config)))


def test_a_changed_file_is_refused(styled_request, cpu_config, tmp_path):
    embedding = embedding_file(tmp_path / "e.safetensors", emb_params=(1, 32))
    changed = dataclasses.replace(embedding, sha256="0" * 64)
    with pytest.raises(GenerationFailed, match="changed or is damaged"):
        generate(dataclasses.replace(styled_request, embeddings=(changed,)), config=cpu_config)
