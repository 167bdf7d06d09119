"""Prompts to the UNet's text conditioning as AUTOMATIC1111 makes it (default settings):
weighted, in 75-token chunks, scheduled over the steps (gpu_workers.prompt_syntax).

Each chunk is encoded alone, between the start and end tokens and padded to 77, and the
chunks' hidden states are joined: a prompt of 2 chunks conditions on 154 tokens. Weights
scale each token's hidden state, then the chunk is scaled back to its mean before weighting
(A1111's "Original" emphasis; the mean is taken over every text of the prompt's schedule, as
A1111 encodes them together). SDXL: both text encoders, each chunk's hidden states side by
side, the pooled embedding from the first chunk, unweighted.

Clip skip applies to negative prompts too, as in A1111 (the pipelines' clip_skip skips the
prompt's layers only); a textual-inversion embedding's vectors stay in one chunk, as in A1111.
Apart from that, a prompt without weights, breaks or editing that fits 75 tokens encodes
exactly as the diffusers pipelines encode it.
"""

from dataclasses import dataclass

import torch

from gpu_workers.pipelines import SDXL, pipeline_family
from gpu_workers.prompt_syntax import CHUNK_TOKENS, Chunk, prompt_chunks, prompt_schedule


@dataclass(frozen=True)
class Conditioning:
    """What the UNet sees of a prompt at one step: hidden states (1, tokens, width), and for
    SDXL the pooled embedding (1, width)."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None


@dataclass(frozen=True)
class ScheduledConditioning:
    """A prompt's conditioning over the steps: `parts[n]` is used while the step (from 0) is
    at most `ends[n]`."""

    ends: tuple[int, ...]
    parts: tuple[Conditioning, ...]

    def at(self, step: int) -> Conditioning:
        for end, part in zip(self.ends, self.parts, strict=True):
            if step <= end:
                return part
        return self.parts[-1]


def _encoders(pipe):
    encoders = [(pipe.tokenizer, pipe.text_encoder)]
    if pipeline_family(pipe) == SDXL:
        encoders.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return encoders


def embedding_runs(tokenizer) -> dict[int, int]:
    """The first token of each textual-inversion embedding of several vectors loaded in
    `tokenizer`, and its number of vectors: diffusers names them `name`, `name_1`, …"""
    added = tokenizer.added_tokens_encoder
    runs = {}
    for name, token in added.items():
        length = 1
        while f"{name}_{length}" in added:
            length += 1
        if length > 1:
            runs[token] = length
    return runs


def _chunk_ids(chunk: Chunk, tokenizer) -> tuple[list[int], list[float]]:
    """The 77 ids the encoder sees for a chunk, and the weight of each: start, the chunk's
    tokens, end, then padding (SD2's and SDXL's second tokenizer pad with "!", not end)."""
    padding = CHUNK_TOKENS - len(chunk.tokens)
    ids = [tokenizer.bos_token_id, *chunk.tokens, tokenizer.eos_token_id]
    ids += [tokenizer.pad_token_id] * padding
    weights = [1.0, *chunk.weights] + [1.0] * (padding + 1)
    return ids, weights


def _weighted(hidden: torch.Tensor, weights: torch.Tensor, schedule_rows: torch.Tensor):
    """A1111's "Original" emphasis on one chunk of every text: each token's hidden state
    times its weight, then all scaled back to the mean they had. The mean is taken over
    `schedule_rows` (the text of each entry of the prompt's schedule, as indices into the
    texts), as A1111 encodes every entry, repeated texts too, as one batch."""
    if bool((weights == 1).all()):
        return hidden
    original_mean = hidden[schedule_rows].mean()
    hidden = hidden * weights.to(hidden.dtype).unsqueeze(-1)
    return hidden * (original_mean / hidden[schedule_rows].mean())


def _encoder_hidden_states(pipe, encoder, ids, clip_skip, sdxl):
    """One encoder's hidden states for a batch of chunk ids, at A1111's clip skip, and for
    SDXL's second encoder its pooled (projected) output.

    SD: the last layer, or layer `clip_skip` from the end through the final layer norm.
    SDXL (both encoders): the penultimate layer, as its pipeline takes, or `clip_skip - 1`
    layers before it, without the final layer norm (the pipeline's clip_skip)."""
    if not sdxl and clip_skip == 1:
        return encoder(ids)[0], None
    output = encoder(ids, output_hidden_states=True)
    if sdxl:
        pooled = output[0] if output[0].ndim == 2 else None
        return output.hidden_states[-(clip_skip + 1)], pooled
    final_layer_norm = getattr(encoder, "text_model", encoder).final_layer_norm
    return final_layer_norm(output.hidden_states[-clip_skip]), None


def encode_texts(pipe, texts: list[str], schedule_rows: list[int], *, clip_skip: int, device):
    """The Conditioning of each text, encoded together as the texts of one prompt's
    schedule (`schedule_rows`: each entry's text, an index into `texts`): every text gets as
    many chunks as the longest (empty chunks after its own)."""
    sdxl = pipeline_family(pipe) == SDXL
    per_encoder = []
    pooled = None
    for tokenizer, encoder in _encoders(pipe):

        def convert(text, tokenizer=tokenizer):
            return pipe.maybe_convert_prompt(text, tokenizer)  # textual-inversion tokens

        runs = embedding_runs(tokenizer)
        chunks = [
            prompt_chunks(text, tokenizer, convert=convert, run_lengths=runs) for text in texts
        ]
        per_encoder.append((tokenizer, encoder, chunks))
    chunk_count = max(len(chunks) for _, _, all_chunks in per_encoder for chunks in all_chunks)
    schedule_rows = torch.tensor(schedule_rows, device=device)
    encoded = []  # per encoder: (texts, tokens, width)
    for tokenizer, encoder, all_chunks in per_encoder:
        parts = []
        for index in range(chunk_count):
            rows = [
                _chunk_ids(chunks[index] if index < len(chunks) else Chunk((), ()), tokenizer)
                for chunks in all_chunks
            ]
            ids = torch.tensor([row for row, _ in rows], device=device)
            weights = torch.tensor([weight for _, weight in rows], device=device)
            hidden, chunk_pooled = _encoder_hidden_states(pipe, encoder, ids, clip_skip, sdxl)
            if index == 0 and chunk_pooled is not None:
                pooled = chunk_pooled
            parts.append(_weighted(hidden, weights, schedule_rows))
        encoded.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
    embeds = encoded[0] if len(encoded) == 1 else torch.cat(encoded, dim=-1)
    dtype = (pipe.text_encoder_2 if sdxl else pipe.text_encoder).dtype  # as the pipelines
    embeds = embeds.to(dtype=dtype, device=device)
    if pooled is not None:
        pooled = pooled.to(dtype=dtype, device=device)
    return [
        Conditioning(embeds[row : row + 1], None if pooled is None else pooled[row : row + 1])
        for row in range(len(texts))
    ]


def encode_prompt(
    pipe, prompt: str, *, steps: int, clip_skip: int, device, first_pass_steps=None
):
    """The prompt's conditioning over `steps` steps (of a second pass after
    `first_pass_steps`, see prompt_schedule): each distinct text of its schedule encoded
    once."""
    schedule = prompt_schedule(prompt, steps, first_pass_steps=first_pass_steps)
    texts = list(dict.fromkeys(text for _, text in schedule))
    parts = encode_texts(
        pipe,
        texts,
        [texts.index(text) for _, text in schedule],
        clip_skip=clip_skip,
        device=device,
    )
    return ScheduledConditioning(
        ends=tuple(end for end, _ in schedule),
        parts=tuple(parts[texts.index(text)] for _, text in schedule),
    )


def zero_conditioning(like: ScheduledConditioning) -> ScheduledConditioning:
    """No prompt at all, as SDXL models that ask for it (force_zeros_for_empty_prompt) take
    an empty negative prompt: zeros the shape of one chunk."""
    part = like.parts[0]
    embeds = torch.zeros_like(part.embeds[:, : CHUNK_TOKENS + 2])
    pooled = None if part.pooled is None else torch.zeros_like(part.pooled)
    return ScheduledConditioning(ends=(like.ends[-1],), parts=(Conditioning(embeds, pooled),))


def batch_conditioning(pipe, requests, cfg_rows, *, device):
    """Each request's prompt conditioning, and its negative prompt's for the rows in
    `cfg_rows` (None for the others): every distinct prompt of the batch encoded once.

    SDXL models that ask for it (force_zeros_for_empty_prompt) take an empty negative prompt
    as none at all, zeros, as their pipeline and A1111 do."""
    first = requests[0]  # steps, clip skip and passes are the batch's (BatchKey)
    encoded = {}

    def conditioning(prompt):
        if prompt not in encoded:
            encoded[prompt] = encode_prompt(
                pipe,
                prompt,
                steps=first.steps,
                clip_skip=first.clip_skip,
                device=device,
                first_pass_steps=first.first_pass_steps,
            )
        return encoded[prompt]

    positives = [conditioning(request.prompt) for request in requests]
    zeros = pipeline_family(pipe) == SDXL and pipe.config.force_zeros_for_empty_prompt
    negatives = [
        None
        if row not in cfg_rows
        else zero_conditioning(positives[row])
        if zeros and not request.negative_prompt
        else conditioning(request.negative_prompt)
        for row, request in enumerate(requests)
    ]
    return positives, negatives
