"""A1111's token counter ("42/75", "80/150") for the studio's prompt boxes, counted on the web
node with the tokenizer the worker uses and the worker's own chunking
(gpu_workers.prompt_syntax.token_chunks): torch-free, as transformers' CLIPTokenizer is.

The tokenizer is read where the web node can reach it: a diffusers folder's `tokenizer/`, or
the Hugging Face cache for a Hub id (a single-file checkpoint's: its diffusers config's).
Nothing is downloaded; where none is reachable the count is unavailable, not guessed."""

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from generation.loras.syntax import prompt_without_lora_tags
from gpu_workers.prompt_syntax import CHUNK_TOKENS, PromptTooComplex, token_chunks

# "owner/name", as the Hub spells repository ids.
HUB_ID_RE = re.compile(r"[\w.-]+/[\w.-]+")
VOCABULARY, MERGES = "vocab.json", "merges.txt"
# Tokenizers loaded, by location: a few models' worth, each a vocabulary of ~50k entries.
MAX_CACHED = 16
_tokenizers: dict = {}  # location → transformers' CLIPTokenizer
_lock = threading.Lock()


@dataclass(frozen=True)
class TokenCount:
    """A1111's figures: every full chunk counts as 75, plus the tokens of the one being
    typed; the capacity is the chunks' room."""

    tokens: int
    capacity: int

    def __str__(self):
        return f"{self.tokens}/{self.capacity}"


def tokenizer_at(location):
    """The CLIP tokenizer of the diffusers folder or cached Hub id `location`; None where
    the web node can't read one."""
    if not location:
        return None
    with _lock:
        if location in _tokenizers:
            return _tokenizers[location]
    folder = tokenizer_folder(location)
    if folder is None:
        return None
    # Imported on the first count: it takes a second or two, which no other page should
    # pay. One thread at a time: transformers' lazy module fails a name asked for by a
    # second thread while the first is still importing it.
    with _lock:
        from transformers import CLIPTokenizer

    try:
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    except (OSError, ValueError):  # not a CLIP tokenizer's files
        return None
    with _lock:
        if len(_tokenizers) >= MAX_CACHED:
            _tokenizers.pop(next(iter(_tokenizers)))
        _tokenizers[location] = tokenizer
    return tokenizer


def tokenizer_folder(location):
    """The folder holding the tokenizer's files (CLIP's vocab.json and merges.txt): the
    diffusers folder's, or the cached Hub snapshot's; None where there is none. (Given no
    files, transformers makes an empty tokenizer rather than fail: so look first.)"""
    folder = Path(location) / "tokenizer"
    if (folder / VOCABULARY).is_file() and (folder / MERGES).is_file():
        return folder
    if not HUB_ID_RE.fullmatch(location):
        return None
    cached = [try_to_load_from_cache(location, f"tokenizer/{name}")
              for name in (VOCABULARY, MERGES)]
    if not all(isinstance(path, str) for path in cached):  # None, or "known missing"
        return None
    return Path(cached[0]).parent


def token_count(text, tokenizer, *, steps):
    """The count A1111 shows for `text` (its <lora:…> tags left out, as A1111 leaves them
    out); None when its prompt editing is too complex to read."""
    try:
        chunks = token_chunks(prompt_without_lora_tags(text), tokenizer, steps=steps)
    except PromptTooComplex:
        return None
    tokens = CHUNK_TOKENS * (len(chunks) - 1) + chunks[-1]
    return TokenCount(tokens, math.ceil(max(tokens, 1) / CHUNK_TOKENS) * CHUNK_TOKENS)
