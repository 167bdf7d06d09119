"""Dynamic prompts, read as A1111's Dynamic Prompts extension reads them (its library,
dynamicprompts): `{a|b|c}` picks one variant, `{2$$a|b|c}` two, and `__name__` one line of
the team's wildcard `name` (`__animals/*__`: of any wildcard in that folder).

A prompt is expanded once per job, when the jobs are queued, from the job's seed: the same
prompt and seed give the same expansion. The job keeps the expansion as its prompt and the
text as typed as its template (A1111's "Template" in the infotext).
"""

import fnmatch
import re

from dynamicprompts.generators import RandomPromptGenerator
from dynamicprompts.wildcards import WildcardManager

from generation.recipe import MAX_PROMPT, prompt_problems
from generation.seeds import seed_after
from generation.wildcards.models import Wildcard

WILDCARD_RE = re.compile(r"__([A-Za-z0-9_/*-]+?)__")
LORA_TAG = "<lora:"
# The parser takes a few milliseconds per brace: this bounds a request's parsing time.
MAX_VARIANT_GROUPS = 50


def is_dynamic(text):
    return "{" in text or WILDCARD_RE.search(text) is not None


def team_wildcards(team):
    """{name: fragments} of the team's wildcards."""
    return {wildcard.name: wildcard.value_list() for wildcard in Wildcard.objects.filter(team=team)}


def template_problems(text, field, wildcards):
    """What keeps `text` from expanding, as (field, message) pairs: its braces, wildcards
    the team lacks, LoRA tags inside variants (the LoRAs a job uses are checked on what
    was typed, so they can't vary)."""
    if not is_dynamic(text):
        return []
    if text.count("{") > MAX_VARIANT_GROUPS:
        return [(field, f"At most {MAX_VARIANT_GROUPS} {{ }} variant groups in a prompt "
                        f"({text.count('{')} given).")]
    problems = []
    depth = 0
    for position, character in enumerate(text):
        if character == "{":
            depth += 1
        elif character == "}":
            depth -= 1
        elif depth > 0 and text.startswith(LORA_TAG, position):
            problems.append((field, "A LoRA tag cannot be one of the { } variants: write "
                                    "<lora:…> outside the braces."))
            break
    unknown = sorted({
        name for name in WILDCARD_RE.findall(text)
        if not fnmatch.filter(wildcards, name)
    })
    if unknown:
        names = ", ".join(f"__{name}__" for name in unknown)
        problems.append((field, f"No wildcard of this team is called {names}: add it in the "
                                "team's wildcards, or check its spelling."))
    if not problems:
        try:
            expanded(text, wildcards, seeds=[0])
        except Exception as error:  # pyparsing's errors, or nesting deeper than it can read
            problems.append((field, f"The {{ }} variants could not be read: {reason(error)}. Close "
                                    "every {, and separate variants with |."))
    return problems


def reason(error):
    text = str(error).split("\n")[0]
    return text[:200] if text else type(error).__name__


def expanded(text, wildcards, *, seeds):
    """`text` with its variants and wildcards picked from each of `seeds` (parsed once); as
    it was without any."""
    if not is_dynamic(text):
        return [text] * len(seeds)
    manager = WildcardManager(root_map={"": [wildcards]})
    generator = RandomPromptGenerator(wildcard_manager=manager)
    return generator.generate(text, len(seeds), seeds=list(seeds))


def expansion_problems(prompt, field, steps):
    if len(prompt) > MAX_PROMPT:
        return [(field, f"Its variants and wildcards make a prompt of {len(prompt):,} "
                        f"characters, more than the {MAX_PROMPT:,} allowed.")]
    return prompt_problems(prompt, field, steps)


def job_prompts(params, wildcards):
    """Each job's (prompt, negative prompt) of `batch_count` jobs queued from `params` (flat
    values with the seed chosen), picked from its own seed: job n starts at seed + n *
    batch_size, as jobs_create numbers them."""
    seed, batch_size = params["seed"], params.get("batch_size") or 1
    seeds = [seed_after(seed, n * batch_size) for n in range(params.get("batch_count") or 1)]
    prompts = expanded(params["prompt"], wildcards, seeds=seeds)
    negatives = expanded(params.get("negative_prompt") or "", wildcards, seeds=seeds)
    return list(zip(prompts, negatives, strict=True))
