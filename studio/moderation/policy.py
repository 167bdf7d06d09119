r"""Prompt policy matching: pure functions, no database.

Text and terms are compared after normalising both: Unicode NFKD, combining marks
stripped, casefolded ("Café" and "CAFE" are the same word). A blocked term matches as
whole words only (so a blocked "peg" never matches "pegboard") and in its plural forms
(term, term+s, term+es, and y→ies). A multi-word term matches across any run of
whitespace.

Regexes, which team admins write, run in RE2 (google-re2): its automata take time linear in
the prompt's length whatever the pattern, so no pattern can stall the web process the way
"(a+)+$" does in a backtracking engine. That is why nested repetitions are allowed again.
RE2 has no backreferences, lookarounds, atomic groups or possessive repetitions; patterns
that use them are refused when the policy is saved, naming the construct. Linear is not
free: a big compiled program (".{0,999}x") costs more per character, so patterns are also
capped by RE2's program size (MAX_PROGRAM_SIZE keeps a 2,000-character prompt well under
10 ms per pattern: `python -m bench.policy`), and a policy's patterns together by
MAX_POLICY_PROGRAM_SIZE. A pattern runs case-insensitively on the normalised text, its own
accents stripped the same way; RE2's \w, \d and \b are ASCII (\pL is a letter of any
script).

The allow-list is for false positives: a match that lies inside an allow-listed phrase
found in the same text is not a match (allow "peg leg jeans" and a blocked "peg" no longer
blocks that phrase, while "peg" on its own still does).
"""

import re
import unicodedata
from dataclasses import dataclass

import re2

MAX_TERM_LENGTH = 100
MAX_PATTERN_LENGTH = 200
MAX_ENTRIES = 500
# RE2's compiled program size (its instruction count). Matching a prompt costs up to about
# this much work per character; \pL alone is 1,202, ".{0,150}x" about 1,360.
MAX_PROGRAM_SIZE = 1500
# A policy's patterns run one after the other on every prompt: their program sizes
# together are capped too, so 500 of the slowest patterns can't add up to seconds.
MAX_POLICY_PROGRAM_SIZE = 15000

REGEX_OPTIONS = re2.Options()
REGEX_OPTIONS.case_sensitive = False
REGEX_OPTIONS.never_capture = True  # only the whole match is used: no group bookkeeping
REGEX_OPTIONS.log_errors = False  # a refused pattern is reported to its author, not logged

# What RE2 can't run, by the start of its error message: named for the policy's author.
UNSUPPORTED = {
    "invalid perl operator: (?=": "lookahead “(?=…)”",
    "invalid perl operator: (?!": "negative lookahead “(?!…)”",
    "invalid perl operator: (?<=": "lookbehind “(?<=…)”",
    "invalid perl operator: (?<!": "negative lookbehind “(?<!…)”",
    "invalid perl operator: (?>": "atomic groups “(?>…)”",
    "invalid perl operator: (?(": "conditionals “(?(…)…)”",
    "invalid perl operator: (?P": "named backreferences “(?P=…)”",
    "invalid perl operator: (?#": "comments “(?#…)”",
    "invalid escape sequence: \\Z": "“\\Z” (“\\z” and “$” are supported)",
    "bad repetition operator: ++": "possessive repetitions such as “a++”",
    "bad repetition operator: *+": "possessive repetitions such as “a*+”",
    "bad repetition operator: ?+": "possessive repetitions such as “a?+”",
}
BACKREFERENCE_ERROR = re.compile(r"invalid escape sequence: \\\d")


def strip_marks(text):
    """NFKD with combining marks removed: "Crème" becomes "Creme"."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def normalize(text):
    """NFKD, combining marks removed, casefolded: the form every comparison uses."""
    return strip_marks(text).casefold()


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


class RegexRefused(ValueError):
    """A pattern the checker won't run; the message says why, naming the pattern."""


def regex_compile(pattern):
    """The pattern compiled by RE2 for normalised text, or RegexRefused saying why not."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexRefused(f"“{pattern[:30]}…” is longer than {MAX_PATTERN_LENGTH} characters.")
    try:
        compiled = re2.compile(strip_marks(pattern), REGEX_OPTIONS)
    except re2.error as error:
        raise RegexRefused(regex_error_message(pattern, error)) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise RegexRefused(
            f"“{pattern}” is too complex to check every prompt quickly (RE2 program size "
            f"{compiled.programsize}, at most {MAX_PROGRAM_SIZE}): use smaller repetition "
            "counts such as {0,20}, or split it into several patterns."
        )
    # Empty matches block too: "\b" alone matches none of "" but the start of every word.
    samples = ("", "a", "a b")
    if any(match.end() == match.start() for text in samples for match in compiled.finditer(text)):
        raise RegexRefused(f"“{pattern}” matches empty text, so it would block every prompt.")
    return compiled


def regex_error_message(pattern, error):
    reason = error.args[0].decode() if isinstance(error.args[0], bytes) else str(error.args[0])
    unsupported = next(
        (name for prefix, name in UNSUPPORTED.items() if reason.startswith(prefix)), None
    )
    if unsupported is None and BACKREFERENCE_ERROR.match(reason):
        unsupported = "backreferences such as “\\1”"
    if unsupported is not None:
        return (
            f"“{pattern}” uses {unsupported}, which the prompt checker (RE2) does not support."
        )
    if reason.startswith("pattern too large"):
        return (
            f"“{pattern}” is too complex to check every prompt quickly: use smaller "
            "repetition counts, or split it into several patterns."
        )
    if reason.startswith("invalid repetition size"):
        return f"“{pattern}” repeats more than 1000 times ({reason.split(': ', 1)[-1]})."
    return f"“{pattern}” is not a valid regular expression: {reason}."


def check_regex(pattern):
    """Why a regex can't be used, or None (see regex_compile)."""
    try:
        regex_compile(pattern)
    except RegexRefused as refused:
        return str(refused)
    return None


def check_regexes_together(patterns):
    """Why a policy's usable regexes together are too slow to run on every prompt, or None."""
    total = 0
    for pattern in patterns:
        try:
            total += regex_compile(pattern).programsize
        except RegexRefused:
            continue  # check_regex names it
    if total > MAX_POLICY_PROGRAM_SIZE:
        return (
            f"Together these regexes are too complex to check every prompt quickly (RE2 "
            f"program size {total}, at most {MAX_POLICY_PROGRAM_SIZE}): remove or simplify "
            "some, such as those with large repetition counts or \\pL."
        )
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
        # Saved patterns the checker refuses (saved before RE2 ran them, or edited past
        # the form) are left out, and listed for the policy's page to report.
        self.regexes, self.refused_regexes = [], []
        for pattern in entries(regexes):
            try:
                self.regexes.append((pattern, regex_compile(pattern)))
            except RegexRefused as refused:
                self.refused_regexes.append(str(refused))
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
