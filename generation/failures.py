"""What a failed job or training run tells its user: never a server path (a full disk is
said plainly: studio.storage.storage_is_full). The traceback, paths and all, stays in the
worker's log."""

import re

# An absolute POSIX path: quoted (it may hold spaces), or bare from a slash that follows no
# word, dot, colon, slash or "…" (so "1/2", "and/or", URLs and cut paths stay).
QUOTED_PATH = re.compile(r"""(['"])/[^'"\n]*\1""")
BARE_PATH = re.compile(r"(?<![\w.:/~…-])/[^\s'\"(),;]+")


def paths_hidden(text):
    """`text` with each absolute path cut to its last part, as "…/name"."""

    def last_part(match):
        path = match.group(0).strip("'\"").rstrip("/.")
        return "…/" + path.rsplit("/", 1)[-1]

    return BARE_PATH.sub(last_part, QUOTED_PATH.sub(last_part, text))


def error_summary(error):
    """The first line of `error`'s message without server paths (an OSError's own words,
    without the file it names); "" when it has none."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return paths_hidden(text)
