"""Prompt policy matching: pure functions, no database.

Text and terms are compared after normalising both: Unicode NFKD, combining marks
stripped, casefolded ("Café" and "CAFE" are the same word). A blocked term matches as
whole words only (so a blocked "peg" never matches "pegboard") and in its plural forms
(term, term+s, term+es, and y→ies). A multi-word term matches across any run of
whitespace.

Regexes run on the normalised text. Python's `re` cannot be timed out, so patterns are
kept simple instead: at most MAX_PATTERN_LENGTH characters each, and patterns that nest
quantifiers (such as "(a+)+", the classic catastrophic backtracking shape) or use
backreferences are refused when the policy is saved.

The allow-list is for false positives: a match that lies inside an allow-listed phrase
found in the same text is not a match (allow "peg leg jeans" and a blocked "peg" no longer
blocks that phrase, while "peg" on its own still does).
"""

import re
import unicodedata
from dataclasses import dataclass

MAX_TERM_LENGTH = 100
MAX_PATTERN_LENGTH = 200
MAX_ENTRIES = 500

# A group that contains a quantifier and is itself quantified: "(a+)+", "(\w*)*", "(x+){2,}".
NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*(?:[+*]|\{\d*,)")
BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")


def normalize(text):
    """NFKD, combining marks removed, casefolded: the form every comparison uses."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return stripped.casefold()


def entries(text):
    """The non-empty lines of a policy list, stripped; '#' starts a comment line."""
    return [
        line.strip() for line in (text or "").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def plural_forms(word):
    forms = [word, word + "s", word + "es"]
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        forms.append(word[:-1] + "ies")
    return forms


def term_pattern(term):
    """A compiled pattern matching the normalised term as whole words, plurals included."""
    words = normalize(term).split()
    if not words:
        return None
    *head, last = words
    last_forms = "|".join(re.escape(form) for form in sorted(plural_forms(last), key=len)[::-1])
    body = r"\s+".join([*(re.escape(word) for word in head), f"(?:{last_forms})"])
    return re.compile(rf"(?<!\w){body}(?!\w)")


def check_term(term):
    """Why a blocked or allowed term can't be used, or None."""
    if len(term) > MAX_TERM_LENGTH:
        return f"“{term[:30]}…” is longer than {MAX_TERM_LENGTH} characters."
    if not re.search(r"\w", normalize(term)):
        return f"“{term}” has no letters or digits to match."
    return None


def check_regex(pattern):
    """Why a regex can't be used, or None: it must compile and be simple (see above)."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"“{pattern[:30]}…” is longer than {MAX_PATTERN_LENGTH} characters."
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as error:
        return f"“{pattern}” is not a valid regular expression: {error}."
    if NESTED_QUANTIFIER.search(pattern):
        return (
            f"“{pattern}” nests repetitions (like “(a+)+”), which can take forever on some "
            "prompts; write it without the outer repetition."
        )
    if BACKREFERENCE.search(pattern):
        return f"“{pattern}” uses a backreference; they are not allowed here."
    if compiled.search(""):
        return f"“{pattern}” matches empty text, so it would block every prompt."
    return None


@dataclass(frozen=True)
class Match:
    term: str  # the blocked term or regex as the policy lists it
    kind: str  # "term" or "regex"
    matched: str  # the (normalised) text it matched
    scope: str  # "site" or the team's name


class CompiledPolicy:
    """One policy's lists, compiled once."""

    def __init__(self, *, blocked_terms="", regexes="", allowed_terms="", scope="site"):
        self.scope = scope
        self.terms = [
            (term, pattern) for term in entries(blocked_terms)
            if (pattern := term_pattern(term)) is not None
        ]
        self.regexes = [
            (pattern, re.compile(pattern, re.IGNORECASE))
            for pattern in entries(regexes) if check_regex(pattern) is None
        ]
        self.allowed = [
            pattern for term in entries(allowed_terms)
            if (pattern := term_pattern(term)) is not None
        ]

    def allowed_spans(self, normalized):
        return [match.span() for pattern in self.allowed for match in pattern.finditer(normalized)]

    def matches(self, normalized, extra_allowed=()):
        """Every blocked term or regex found in already-normalised text, minus those inside
        an allow-listed phrase (this policy's or `extra_allowed` spans)."""
        spans = [*self.allowed_spans(normalized), *extra_allowed]

        def allowed(match):
            start, end = match.span()
            return any(low <= start and end <= high for low, high in spans)

        found = []
        for kind, compiled in (("term", self.terms), ("regex", self.regexes)):
            for term, pattern in compiled:
                for match in pattern.finditer(normalized):
                    if not allowed(match):
                        found.append(Match(term, kind, match.group(0), self.scope))
                        break
        return found


def find_matches(text, policies):
    """Matches of `text` against policies, the site policy first. The site's allow-list
    applies to every policy; a team's allow-list only to its own lists."""
    normalized = normalize(text)
    if not normalized.strip():
        return []
    site_spans = [
        span for policy in policies if policy.scope == "site"
        for span in policy.allowed_spans(normalized)
    ]
    found = []
    for policy in policies:
        found.extend(policy.matches(normalized, extra_allowed=site_spans))
    return found
