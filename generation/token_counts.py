"""A1111's token counter ("42/75", "80/150") for the studio's prompt boxes, counted on the web
node with the tokenizer the worker uses and the worker's own chunking
(gpu_workers.prompt_syntax.token_chunks): torch-free, as transformers' tokenizers are.
FLUX.1 and SD 3.x models count their T5 prompt instead, against the family's limit
("42/512"), as the worker counts it before refusing a longer one.

The tokenizer is read where the web node can reach it: a diffusers folder's `tokenizer/`
(T5's: `tokenizer_2/` for FLUX.1, `tokenizer_3/` for SD 3.x), or the Hugging Face cache for
a Hub id (a single-file checkpoint's: its diffusers config's). Nothing is downloaded; where
none is reachable the count is unavailable, not guessed."""

import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from generation.choices import ModelFamily
from generation.loras.syntax import prompt_without_lora_tags
from gpu_workers.prompt_syntax import (
    CHUNK_TOKENS,
    PromptTooComplex,
    t5_token_limit,
    token_chunks,
)

# "owner/name", as the Hub spells repository ids.
HUB_ID_RE = re.compile(r"[\w.-]+/[\w.-]+")
VOCABULARY, MERGES = "vocab.json", "merges.txt"
T5_TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer's one file: no sentencepiece
TRANSFORMER_CONFIG = "transformer/config.json"
# Where each flow family's T5 tokenizer lies in a diffusers folder.
T5_TOKENIZER_FOLDERS = {ModelFamily.FLUX1: "tokenizer_2", ModelFamily.SD3: "tokenizer_3"}
# Tokenizers loaded, by location: a few models' worth, each a vocabulary of ~50k entries.
MAX_CACHED = 16
_tokenizers: dict = {}  # (location, folder) → a transformers tokenizer
_lock = threading.Lock()


@dataclass(frozen=True)
class TokenCount:
    """A1111's figures: every full chunk counts as 75, plus the tokens of the one being
    typed; the capacity is the chunks' room."""

    tokens: int
    capacity: int

    @property
    def too_many(self):
        """More than the capacity: only T5's limit can be passed (CLIP's chunks grow)."""
        return self.tokens > self.capacity

    def __str__(self):
        return f"{self.tokens}/{self.capacity}"


def tokenizer_at(location):
    """The CLIP tokenizer of the diffusers folder or cached Hub id `location`; None where
    the web node can't read one."""
    return _tokenizer_at(location, "tokenizer", (VOCABULARY, MERGES), "CLIPTokenizer")


def t5_tokenizer_at(location, family):
    """The T5 tokenizer of a FLUX.1 or SD 3.x model's diffusers folder or cached Hub id
    `location`; None where the web node can't read one."""
    return _tokenizer_at(location, T5_TOKENIZER_FOLDERS[family], (T5_TOKENIZER_FILE,),
                         "T5Tokenizer")


def _tokenizer_at(location, subfolder, files, class_name):
    if not location:
        return None
    key = (location, subfolder)
    with _lock:
        if key in _tokenizers:
            return _tokenizers[key]
    folder = tokenizer_folder(location, subfolder, files)
    if folder is None:
        return None
    # Imported on the first count: it takes a second or two, which no other page should
    # pay. One thread at a time: transformers' lazy module fails a name asked for by a
    # second thread while the first is still importing it.
    with _lock:
        import transformers

        tokenizer_class = getattr(transformers, class_name)
    try:
        tokenizer = tokenizer_class.from_pretrained(folder)
    except (OSError, ValueError):  # not that tokenizer's files
        return None
    with _lock:
        if len(_tokenizers) >= MAX_CACHED:
            _tokenizers.pop(next(iter(_tokenizers)))
        _tokenizers[key] = tokenizer
    return tokenizer


def tokenizer_folder(location, subfolder="tokenizer", files=(VOCABULARY, MERGES)):
    """The folder holding a tokenizer's `files` (CLIP's vocab.json and merges.txt): the
    diffusers folder's `subfolder`, or the cached Hub snapshot's; None where there is none.
    (Given no files, transformers makes an empty tokenizer rather than fail: so look
    first.)"""
    folder = Path(location) / subfolder
    if all((folder / name).is_file() for name in files):
        return folder
    cached = [hub_cached_file(location, f"{subfolder}/{name}") for name in files]
    if None in cached:
        return None
    return cached[0].parent


def hub_cached_file(location, path):
    """The cached file `path` of the Hub id `location`, or None."""
    if not HUB_ID_RE.fullmatch(location):
        return None
    cached = try_to_load_from_cache(location, path)
    return Path(cached) if isinstance(cached, str) else None  # None, or "known missing"


def t5_token_limit_at(location, family):
    """The family's T5 limit for the model at `location`: FLUX.1's depends on whether its
    transformer embeds guidance ([dev]) or not ([schnell]), read from its config; None where
    that can't be read."""
    if family == ModelFamily.SD3:
        return t5_token_limit(flux=False, guidance_embeds=False)
    config_file = Path(location) / TRANSFORMER_CONFIG
    if not config_file.is_file():
        config_file = hub_cached_file(location, TRANSFORMER_CONFIG)
    if config_file is None:
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return t5_token_limit(flux=True, guidance_embeds=bool(config.get("guidance_embeds")))


def token_count(text, tokenizer, *, steps):
    """The count A1111 shows for `text` (its <lora:…> tags left out, as A1111 leaves them
    out); None when its prompt editing is too complex to read."""
    try:
        chunks = token_chunks(prompt_without_lora_tags(text), tokenizer, steps=steps)
    except PromptTooComplex:
        return None
    tokens = CHUNK_TOKENS * (len(chunks) - 1) + chunks[-1]
    return TokenCount(tokens, math.ceil(max(tokens, 1) / CHUNK_TOKENS) * CHUNK_TOKENS)


def t5_token_count(text, tokenizer, *, limit):
    """T5's tokens in `text` (its <lora:…> tags left out), with its end token, as the worker
    counts them, over the family's `limit`."""
    return TokenCount(len(tokenizer(prompt_without_lora_tags(text)).input_ids), limit)
