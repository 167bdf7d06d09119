"""What a failed job or training run tells its user: never a server path, and a full disk
said plainly. The traceback, paths and all, stays in the worker's log."""

import errno
import os
import re

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# Libraries that wrap the OSError (safetensors, torch) keep only its text.
FULL_TEXTS = tuple(os.strerror(number) for number in FULL_ERRNOS)
# An absolute POSIX path: quoted (it may hold spaces), or bare from a slash that follows no
# word, dot, colon, slash or "…" (so "1/2", "and/or", URLs and cut paths stay).
QUOTED_PATH = re.compile(r"""(['"])/[^'"\n]*\1""")
BARE_PATH = re.compile(r"(?<![\w.:/~…-])/[^\s'\"(),;]+")


def storage_is_full(error):
    """Whether `error`, or an error it was raised from, is a full disk or spent quota."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in FULL_ERRNOS:
            return True
        if any(text in str(error) for text in FULL_TEXTS):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


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
