"""The prompt language AUTOMATIC1111 users type, read as A1111 (1.10, default settings) reads
it. No torch here: a web feature may import it (token_chunks).

- Attention: `(words)` ×1.1, `((words))` ×1.21, `[words]` ÷1.1, `(words:1.3)`; `\\(`, `\\)`,
  `\\[`, `\\]`, `\\\\` are literal characters. As in A1111, a bracket left open still weighs
  the rest of the prompt, and a closing one without its opening is literal text.
- `BREAK` ends the 75-token chunk there; the next words start a new one.
- Prompt editing `[from:to:when]`, `[to:when]`, `[from::when]`: `when` with a decimal point
  is a fraction of the steps, without one a step number; the text changes after that step.
  Alternation `[a|b|c]` takes the next option at every step. A prompt whose brackets do not
  parse as editing is one prompt for every step, its brackets read by the attention rules.

A1111's parsers are AGPL-3.0. The code here is written anew to the same behaviour, but the
schedule grammar is A1111's text (lark's Earley parser resolves ambiguous prompts by the
grammar's shape, so a grammar of our own could read them otherwise): whether that text may
stay in an Apache-2.0 project is for the maintainers to confirm.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache

import lark

# A1111's chunk: 75 tokens of prompt between the start and end tokens, 77 in all.
CHUNK_TOKENS = 75
# A1111's "comma_padding_backtrack" (20): a chunk that fills up within 20 tokens after a
# comma ends at that comma, and the words after it start the next chunk.
COMMA_BACKTRACK = 20
ROUND_BRACKET_WEIGHT = 1.1

# The longest prompt T5 reads in the flow families, in tokens with its end token: the
# pipelines' max_sequence_length. FLUX.1 [schnell], whose transformer embeds no guidance,
# reads fewer than [dev]. A longer prompt is refused (the worker) and shown as too long
# (the studio's token counter), never cut short.
FLUX_DEV_T5_TOKENS = 512
FLUX_SCHNELL_T5_TOKENS = 256
SD3_T5_TOKENS = 256


def t5_token_limit(*, flux: bool, guidance_embeds: bool) -> int:
    """T5's limit for a FLUX.1 model (`flux`; [dev] when its transformer `guidance_embeds`)
    or an SD 3.x one."""
    if flux:
        return FLUX_DEV_T5_TOKENS if guidance_embeds else FLUX_SCHNELL_T5_TOKENS
    return SD3_T5_TOKENS


@dataclass(frozen=True)
class Piece:
    """Text with its attention weight. A BREAK is the piece `BREAK_PIECE`."""

    text: str
    weight: float


# A1111 marks a BREAK with weight -1 and multiplies it like any text inside brackets, where
# it then reads as the word "BREAK": the same here, so such prompts encode alike.
BREAK_PIECE = Piece("BREAK", -1.0)

_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ATTENTION_TOKEN = re.compile(
    r"""
    (?P<escaped>\\[()\[\]\\]) | (?P<backslash>\\)
    | (?P<open>[(\[])
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+ | :)
    """,
    re.X,
)


def parse_attention(text: str) -> list[Piece]:
    """The prompt's pieces with their weights, neighbours of equal weight merged:
    "an (important) word" is "an " 1.0, "important" 1.1, " word" 1.0."""
    pieces: list[list] = []  # [text, weight], weights multiplied as brackets close
    open_round: list[int] = []  # where each open bracket's pieces start
    open_square: list[int] = []

    def weigh_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token = match.group(0)
        if match["escaped"] or match["backslash"]:
            pieces.append([token[1:], 1.0])  # a lone backslash disappears
        elif token == "(":
            open_round.append(len(pieces))
        elif token == "[":
            open_square.append(len(pieces))
        elif match["weight"] is not None and open_round and _is_number(match["weight"]):
            weigh_from(open_round.pop(), float(match["weight"]))
        elif token == ")" and open_round:
            weigh_from(open_round.pop(), ROUND_BRACKET_WEIGHT)
        elif token == "]" and open_square:
            weigh_from(open_square.pop(), 1 / ROUND_BRACKET_WEIGHT)
        else:
            for position, part in enumerate(_BREAK.split(token)):
                if position:
                    pieces.append([BREAK_PIECE.text, BREAK_PIECE.weight])
                pieces.append([part, 1.0])
    for start in open_round:
        weigh_from(start, ROUND_BRACKET_WEIGHT)
    for start in open_square:
        weigh_from(start, 1 / ROUND_BRACKET_WEIGHT)

    merged: list[list] = []
    for piece in pieces or [["", 1.0]]:
        if merged and merged[-1][1] == piece[1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return [Piece(text, weight) for text, weight in merged]


def _is_number(text: str) -> bool:
    """Whether `[.\\d]+` text is a number ("1.2.3" and "." are not; A1111 fails on them, here
    they stay literal text)."""
    return re.fullmatch(r"\d+\.?\d*|\.\d+", text.lstrip("+-")) is not None


# The language of prompt editing and alternation (the same as A1111's grammar): brackets
# that form neither are kept as text for parse_attention.
_SCHEDULE_GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""


@cache
def _schedule_parser() -> lark.Lark:
    return lark.Lark(_SCHEDULE_GRAMMAR)


# What can make a scheduled or alternate node: without a "[" and either a "|" or a ":" then
# a number then "]", no parse of the prompt has one, so it is one text for every step.
_SCHEDULED_END = re.compile(r":\s*[+-]?[\d.]+(?:[eE][+-]?\d+)?\s*\]")
# The grammar is ambiguous (stray brackets and colons may be read many ways) and the Earley
# parser's time grows steeply with them: ~0.2 s at 64, seconds beyond (2-core CPU).
MAX_SCHEDULE_MARKS = 64
_MARKS = re.compile(r"[\[\]():|]")


class PromptTooComplex(ValueError):
    """A prompt using editing or alternation with more brackets, colons and bars than
    MAX_SCHEDULE_MARKS."""


def prompt_schedule(
    prompt: str, steps: int, *, first_pass_steps: int | None = None
) -> list[tuple[int, str]]:
    """The prompt's texts over `steps` steps, as (last step, text) pairs in step order.

    Step numbers count from 0 as A1111's sampler does: a text is used while the step is at
    most its last step, so `[a:b:3]` uses "a" for steps 0 to 3, then "b". For hires fix's
    second pass, `first_pass_steps` counts the first pass's steps first, as A1111 1.6+ does:
    a fraction 1 is the second pass's start, a step number is after the first pass's steps.
    Raises PromptTooComplex for a prompt with editing that is too costly to parse.
    """
    return list(_schedule(prompt, steps, first_pass_steps))


@lru_cache(maxsize=256)  # a worker checks a request's prompts at submit, then encodes them
def _schedule(
    prompt: str, steps: int, first_pass_steps: int | None
) -> tuple[tuple[int, str], ...]:
    if "[" not in prompt or not ("|" in prompt or _SCHEDULED_END.search(prompt)):
        return ((steps, prompt),)
    marks = len(_MARKS.findall(prompt))
    if marks > MAX_SCHEDULE_MARKS:
        raise PromptTooComplex(
            f"The prompt uses prompt editing or alternation and has {marks} brackets, colons "
            f"and bars; at most {MAX_SCHEDULE_MARKS} are allowed with them."
        )
    try:
        tree = _schedule_parser().parse(prompt)
    except lark.exceptions.LarkError:
        return ((steps, prompt),)
    ends = {steps}
    when_of: dict[int, int] = {}  # id(scheduled tree) → its last step of "from"
    for node in tree.iter_subtrees():
        if node.data == "scheduled":
            number = str(node.children[-2])
            if "." in number:  # a fraction of the steps, in a second pass of both passes'
                value = (float(number) - (0.0 if first_pass_steps is None else 1.0)) * steps
            else:
                value = float(number) - (first_pass_steps or 0)
            # Clamped before int(): "1e999" is infinite (A1111 fails on it).
            when = int(max(-1.0, min(float(steps), value)))
            when_of[id(node)] = when
            if when >= 1:
                ends.add(when)
        elif node.data == "alternate":
            ends.update(range(1, steps + 1))
    return tuple((end, _text_at(tree, end, when_of)) for end in sorted(ends))


def _text_at(tree: lark.Tree, step: int, when_of: dict[int, int]) -> str:
    """The tree's text at `step`: each scheduled node's "from" or "to", each alternate's
    option of that step. Walked with a stack, not recursion: brackets may nest deeply."""
    texts = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if node is None:  # an absent "from" or alternation option
            continue
        if isinstance(node, lark.Token):
            texts.append(str(node))
        elif node.data == "scheduled":
            before, after = node.children[0], node.children[1]
            pending.append(before if step <= when_of[id(node)] else after)
        elif node.data == "alternate":
            pending.append(node.children[(step - 1) % len(node.children)])
        else:
            pending.extend(reversed(node.children))
    return "".join(texts)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a prompt: up to 75 token ids and their weights, without the start, end
    and padding tokens the encoder sees around them."""

    tokens: tuple[int, ...]
    weights: tuple[float, ...]


def prompt_chunks(
    text: str,
    tokenizer,
    *,
    convert: Callable[[str], str] | None = None,
    run_lengths: Mapping[int, int] | None = None,
) -> list[Chunk]:
    """One prompt text (a schedule's, without editing syntax) in chunks, as A1111 cuts it:
    75 tokens each, a chunk ends early at BREAK, and at a comma when it fills up within 20
    tokens after one. `tokenizer`: a Hugging Face CLIP tokenizer. `convert`: applied to each
    piece's text before tokenising (textual-inversion names to their tokens).
    `run_lengths`: tokens that start a run of that many which stays in one chunk (a
    textual-inversion embedding's vectors, as A1111 keeps them together)."""
    run_lengths = run_lengths or {}
    pieces = parse_attention(text)
    texts = [convert(piece.text) if convert else piece.text for piece in pieces]
    ids = tokenizer(texts, add_special_tokens=False, truncation=False).input_ids
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    if comma == tokenizer.unk_token_id:  # a vocabulary without it
        comma = None
    chunks: list[Chunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal tokens, weights, last_comma
        chunks.append(Chunk(tuple(tokens), tuple(weights)))
        tokens, weights, last_comma = [], [], -1

    for piece, piece_ids in zip(pieces, ids, strict=True):
        if piece == BREAK_PIECE:
            close()
            continue
        for token in piece_ids:
            if token == comma:
                last_comma = len(tokens)
            elif (
                len(tokens) == CHUNK_TOKENS
                and last_comma != -1
                and CHUNK_TOKENS - last_comma <= COMMA_BACKTRACK
            ):
                moved = tokens[last_comma + 1 :], weights[last_comma + 1 :]
                del tokens[last_comma + 1 :], weights[last_comma + 1 :]
                close()
                tokens, weights = moved
            if len(tokens) == CHUNK_TOKENS:
                close()
            if tokens and len(tokens) + run_lengths.get(token, 1) > CHUNK_TOKENS:
                close()
            tokens.append(token)
            weights.append(piece.weight)
    if tokens or not chunks:
        close()
    return chunks


def token_chunks(text: str, tokenizer, *, steps: int = 20) -> list[int]:
    """How many of the prompt's tokens each 75-token chunk holds, for a token counter
    (A1111 shows "80/150": 75 for each full chunk, plus the last one's count, over 75 per
    chunk). With prompt editing, the schedule's longest text at `steps` steps is counted,
    as A1111's counter does."""
    counts = [
        [len(chunk.tokens) for chunk in prompt_chunks(segment, tokenizer)]
        for _, segment in prompt_schedule(text, steps)
    ]
    return max(counts, key=lambda chunk_counts: (len(chunk_counts), chunk_counts[-1]))
