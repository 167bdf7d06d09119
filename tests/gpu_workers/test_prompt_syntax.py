"""A1111's prompt language read as A1111 1.10 reads it (the expected values are A1111's own,
from its parser's documented examples where it has them)."""

import subprocess
import sys

import pytest
from transformers import CLIPTokenizer

from gpu_workers.prompt_syntax import (
    BREAK_PIECE,
    MAX_SCHEDULE_MARKS,
    Piece,
    PromptTooComplex,
    parse_attention,
    prompt_chunks,
    prompt_schedule,
    token_chunks,
)


def pieces(text):
    return [(piece.text, round(piece.weight, 6)) for piece in parse_attention(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("((nested))", [("nested", 1.21)]),
        ("[less]", [("less", 0.909091)]),
        ("[[less]]", [("less", 0.826446)]),
        ("(word:1.3) and (other: 0.5 )", [("word", 1.3), (" and ", 1.0), ("other", 0.5)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.573),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641),
                (".", 1.1),
            ],
        ),
        # Escapes are literal characters; a lone backslash disappears.
        (r"\(literal\]", [("(literal]", 1.0)]),
        (r"a \\ b \x", [("a \\ b x", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_attention_weights(text, expected):
    assert pieces(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Unclosed brackets still weigh the rest; closing ones alone are literal text.
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("a [b", [("a ", 1.0), ("b", 0.909091)]),
        ("a) b] c", [("a) b] c", 1.0)]),
        ("x:1.2) y", [("x:1.2) y", 1.0)]),
        ("((a][:b:c", [("a]", 1.21), (":b:c", 1.1)]),
        # A weight that is no number stays text (A1111 fails on it).
        ("(x:1.2.3)", [("x:1.2.3)", 1.1)]),
        ("(x:.)", [("x:.)", 1.1)]),
        (")(][::(:", [(")", 1.0), ("]", 1.1), ("::", 1.0), (":", 1.1)]),
    ],
)
def test_malformed_brackets_never_fail(text, expected):
    assert pieces(text) == expected


def test_break_separates_pieces():
    assert parse_attention("a cat BREAK a dog") == [
        Piece("a cat", 1.0),
        BREAK_PIECE,
        Piece("a dog", 1.0),
    ]
    # Only the whole word, any case but upper is text.
    assert pieces("BREAKFAST, break") == [("BREAKFAST, break", 1.0)]
    # Inside brackets A1111 weighs the marker too, so it is the word "BREAK" there.
    assert pieces("(a BREAK b)") == [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]


def schedule(prompt, steps=10):
    return prompt_schedule(prompt, steps)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("test", [(10, "test")]),
        ("a [b:3]", [(3, "a "), (10, "a b")]),
        ("a [b: 3]", [(3, "a "), (10, "a b")]),
        ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
        ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
        ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
        ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
        ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
        ("[cat:dog:0.4]", [(4, "cat"), (10, "dog")]),
        ("[cat::2]", [(2, "cat"), (10, "")]),
        # A decimal point makes a fraction: 1.0 is every step, 1.5 too (capped).
        ("[cat:dog:1.0]", [(10, "cat")]),
        ("[cat:dog:1.5]", [(10, "cat")]),
        ("[cat:dog:25]", [(10, "cat")]),
        ("[cat:dog:0]", [(10, "dog")]),
        ("[cat:dog:-2]", [(10, "dog")]),
        ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ],
)
def test_prompt_editing(prompt, expected):
    assert schedule(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        # A1111's own examples (10 steps, then a second pass of 10).
        ("a [b:.5] c", [(10, "a b c")]),
        ("a [b:1.5] c", [(5, "a  c"), (10, "a b c")]),
        # A step number counts the first pass's steps too.
        ("[x:y:15]", [(5, "x"), (10, "y")]),
        ("[x:y:8]", [(10, "y")]),
        ("[x|y]", [(1, "x"), (2, "y"), (3, "x"), (4, "y"), (5, "x"), (6, "y"), (7, "x"),
                   (8, "y"), (9, "x"), (10, "y")]),
    ],
)
def test_a_second_pass_continues_the_first_passs_schedule(prompt, expected):
    assert prompt_schedule(prompt, 10, first_pass_steps=10) == expected


def test_alternation_switches_every_step():
    assert schedule("[a|(b:1.1)]", 4) == [(1, "a"), (2, "(b:1.1)"), (3, "a"), (4, "(b:1.1)")]
    assert schedule("[fe|]male", 4) == [(1, "female"), (2, "male"), (3, "female"), (4, "male")]
    assert [text for _, text in schedule("[fe|||]male", 5)] == [
        "female", "male", "male", "male", "female",
    ]
    # With editing in the same prompt.
    assert schedule("[x|y] [p:q:2]", 3) == [(1, "x p"), (2, "y p"), (3, "x q")]


@pytest.mark.parametrize(
    "prompt", ["a [unbalanced", "[a:b:c]", "[a:b:]", "[:::]", "]]][[[", "a [b:3", "\\"]
)
def test_malformed_schedules_are_one_literal_prompt(prompt):
    assert schedule(prompt) == [(10, prompt)]
    parse_attention(prompt)  # and its brackets read as attention, without failing


def test_prompts_without_editing_are_never_parsed_for_it(monkeypatch):
    # Heavy weighting without editing is common, and the Earley parser slow on brackets.
    from gpu_workers import prompt_syntax

    monkeypatch.setattr(prompt_syntax, "_schedule_parser", None)  # would fail if called
    heavy = "(masterpiece:1.2), [[blurry]], ((best quality)), " * 40

    assert schedule(heavy) == [(10, heavy)]
    assert schedule("a [b:c] (d:1.5)") == [(10, "a [b:c] (d:1.5)")]


def test_editing_with_too_many_brackets_is_refused_not_parsed_for_seconds():
    allowed = "(x) " * ((MAX_SCHEDULE_MARKS - 4) // 2) + "[a:b:3]"
    assert schedule(allowed)[0] == (3, allowed.replace("[a:b:3]", "a"))

    with pytest.raises(PromptTooComplex, match="at most 64"):
        schedule("(x) " * 40 + "[a:b:3]")


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        # Deep nesting, as far as the marks allow.
        ("(a:" * 20 + "[b:c:5]", [(5, "(a:" * 20 + "b"), (10, "(a:" * 20 + "c")]),
        (
            "[" * 30 + "a:b:3" + "]" * 30,
            [(3, "[" * 29 + "a" + "]" * 29), (10, "[" * 29 + "b" + "]" * 29)],
        ),
        # A number too large for int() is past the last step.
        ("[a:b:1e999]", [(10, "a")]),
        ("[a:b:-1e999]", [(10, "b")]),
    ],
)
def test_extreme_numbers_and_nesting(prompt, expected):
    assert schedule(prompt) == expected


@pytest.fixture(scope="module")
def tokenizer(tiny_sd15):
    return CLIPTokenizer.from_pretrained(tiny_sd15 / "tokenizer")


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def test_chunks_hold_75_tokens(tokenizer):
    words = " ".join(f"w{n % 10}" for n in range(100))
    tokens = ids(tokenizer, words)
    assert len(tokens) > 150  # each "wN" and space are separate tokens in the tiny vocab

    chunks = prompt_chunks(words, tokenizer)

    assert [len(chunk.tokens) for chunk in chunks] == [75, 75, len(tokens) - 150]
    assert sum((chunk.tokens for chunk in chunks), ()) == tuple(tokens)
    assert all(set(chunk.weights) == {1.0} for chunk in chunks)
    assert token_chunks(words, tokenizer) == [75, 75, len(tokens) - 150]


def test_weights_follow_their_tokens(tokenizer):
    chunks = prompt_chunks("a (dog:1.3) [owl]", tokenizer)

    a, dog, owl = ids(tokenizer, "a"), ids(tokenizer, "dog"), ids(tokenizer, "owl")
    assert len(dog) == len(owl) == 3  # a token per letter in the tiny vocabulary
    assert len(chunks) == 1
    assert chunks[0].tokens == tuple(a + dog + owl)
    assert chunks[0].weights == pytest.approx([1.0] + [1.3] * 3 + [1 / 1.1] * 3)


def test_break_starts_a_new_chunk(tokenizer):
    chunks = prompt_chunks("a cat BREAK a dog", tokenizer)

    assert [chunk.tokens for chunk in chunks] == [
        tuple(ids(tokenizer, "a cat")),
        tuple(ids(tokenizer, "a dog")),
    ]
    # A leading BREAK leaves an empty chunk, as in A1111; a trailing one adds none.
    assert [len(chunk.tokens) for chunk in prompt_chunks("BREAK a", tokenizer)] == [0, 1]
    assert len(prompt_chunks("a BREAK", tokenizer)) == 1
    assert token_chunks("a cat BREAK a dog", tokenizer) == [2, 4]  # "cat" is one token


def test_a_chunk_ends_at_a_comma_it_fills_up_soon_after(tokenizer):
    comma = ids(tokenizer, ",")[0]
    head = "x" * 60 + ","  # the comma is token 61 of the chunk
    chunks = prompt_chunks(head + "y" * 30, tokenizer)

    assert [len(chunk.tokens) for chunk in chunks] == [61, 30]
    assert chunks[0].tokens[-1] == comma
    # A comma more than 20 tokens before the end does not move the words after it.
    chunks = prompt_chunks("x" * 40 + "," + "y" * 50, tokenizer)
    assert [len(chunk.tokens) for chunk in chunks] == [75, 16]


def test_an_embeddings_vectors_stay_in_one_chunk(tokenizer):
    run = ids(tokenizer, "owl")  # stands for a 3-vector embedding's tokens
    text = "x" * 73 + " owl"

    assert [len(chunk.tokens) for chunk in prompt_chunks(text, tokenizer)] == [75, 1]
    chunks = prompt_chunks(text, tokenizer, run_lengths={run[0]: 3})
    assert [chunk.tokens for chunk in chunks] == [tuple(ids(tokenizer, "x" * 73)), tuple(run)]


def test_token_chunks_counts_the_longest_text_of_a_schedule(tokenizer):
    assert token_chunks("[a:bbbb:0.5]", tokenizer) == [4]
    assert token_chunks("", tokenizer) == [0]


def test_the_syntax_module_never_imports_torch():
    # A web feature (a token counter) may read prompts with it.
    code = """
import sys
import gpu_workers.prompt_syntax
assert "torch" not in sys.modules, "importing gpu_workers.prompt_syntax imported torch"
"""
    subprocess.run([sys.executable, "-c", code], check=True)
