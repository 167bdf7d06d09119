"""Prompt history: the prompts people ran, one entry per prompt text, newest run first.

An entry groups every run of the same prompt: how many runs, the latest run (its model,
project, negative prompt: what "Reuse" fills the form with), the newest images those runs
made and whether the viewer starred the prompt. A page costs the same few queries however
many prompts, runs and images there are.

Search is PostgreSQL full text search on PostgreSQL (every word as a prefix, stemmed English
or as written, so that it finds while the user is still typing) and a case-insensitive
substring match on other databases (SQLite in the embedded mode and the default test run).
"""

import re
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, F, Max, Q, Window
from django.db.models.functions import RowNumber

from gallery.models import Image
from generation.models import GenerationJob, PromptFavourite, prompt_key
from studio.accounts.models import Membership
from studio.permissions import can

PAGE_SIZE = 20
IMAGES_PER_PROMPT = 6
MAX_QUERY_LENGTH = 200
MAX_TERMS = 12
# Control characters (NUL among them: PostgreSQL refuses it in any string).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def user_jobs(user):
    """The user's own jobs in every project they may still see (teams they are in)."""
    return GenerationJob.objects.filter(
        created_by=user, project__team__memberships__user=user
    )


def project_jobs(project, user=None):
    """A project's jobs: everyone's, or only those `user` ran."""
    jobs = GenerationJob.objects.filter(project=project)
    return jobs.filter(created_by=user) if user is not None else jobs


def clean_query(text):
    text = CONTROL_CHARACTERS.sub(" ", text or "")
    return " ".join(text.split())[:MAX_QUERY_LENGTH]


def search(jobs, text):
    """Jobs whose prompt matches `text`; any text at all, however odd, is safe here."""
    text = clean_query(text)
    if not text:
        return jobs
    if connection.vendor == "postgresql":
        return full_text_search(jobs, text)
    return substring_search(jobs, text)


def substring_search(jobs, text):
    """Every word (quotes ignored) somewhere in the prompt, in any case."""
    words = [word.strip("\"'") for word in text.split()[:MAX_TERMS]]
    for word in [word for word in words if word] or [text]:
        jobs = jobs.filter(prompt__icontains=word)
    return jobs


def full_text_search(jobs, text):
    """PostgreSQL full text search: every word, as a prefix (it finds while the user types:
    "lightho" finds "lighthouse"), either stemmed ("skies" finds "sky") or as written
    (words English search ignores, such as "a" or "on", still find)."""
    from django.contrib.postgres.search import SearchQuery, SearchVector

    # Letters and digits only: nothing in them means anything to to_tsquery's syntax.
    terms = re.findall(r"[^\W_]+", text)[:MAX_TERMS]
    if not terms:
        # Nothing a text search could index ("!!!", "--"): look for the characters.
        return jobs.filter(prompt__icontains=text)
    prefixes = " & ".join(f"{term}:*" for term in terms)
    # alias(), not annotate(): the match is a condition on the rows themselves (no
    # subquery of ids), so the planner combines the prompt indexes with the page's others.
    return jobs.alias(
        english=SearchVector("prompt", config="english"),
        simple=SearchVector("prompt", config="simple"),
    ).filter(
        Q(english=SearchQuery(prefixes, config="english", search_type="raw"))
        | Q(simple=SearchQuery(prefixes, config="simple", search_type="raw"))
    )


def favourites_of(jobs, user):
    return jobs.filter(prompt__in=PromptFavourite.objects.filter(user=user).values("prompt"))


@dataclass
class PromptEntry:
    prompt: str
    runs: int
    image_count: int
    latest: GenerationJob
    images: list = field(default_factory=list)
    is_favourite: bool = False
    may_reuse: bool = False

    @property
    def key(self):
        return prompt_key(self.prompt)

    @property
    def more_images(self):
        return max(self.image_count - len(self.images), 0)


def prompt_entries(*, user, jobs, query="", favourites_only=False, page=1):
    """One page of entries from `jobs` (already limited to what `user` may see) and
    whether another page follows."""
    if query:
        jobs = search(jobs, query)
    if favourites_only:
        jobs = favourites_of(jobs, user)
    offset = (max(page, 1) - 1) * PAGE_SIZE
    groups = list(
        jobs.values("prompt")
        .annotate(
            runs=Count("pk", distinct=True),
            last_run_at=Max("created_at"),
            last_id=Max("pk"),
        )
        .order_by("-last_run_at", "-last_id")[offset : offset + PAGE_SIZE + 1]
    )
    has_more = len(groups) > PAGE_SIZE
    groups = groups[:PAGE_SIZE]
    if not groups:
        return [], False
    prompts = [group["prompt"] for group in groups]
    page_jobs = jobs.filter(prompt__in=prompts)
    newest_first = [F("created_at").desc(), F("pk").desc()]

    latest = {
        job.prompt: job
        for job in page_jobs.annotate(
            rank=Window(RowNumber(), partition_by=[F("prompt")], order_by=newest_first)
        )
        .filter(rank=1)
        .select_related("project__team", "model", "created_by")
    }
    # Counted for this page's prompts only: joined to the groups above, the count read
    # every image of every job in scope (the whole image table for a big project).
    image_counts = dict(
        Image.objects.filter(job__in=page_jobs.values("pk"))
        .values("job__prompt")
        .annotate(count=Count("pk"))
        .values_list("job__prompt", "count")
    )
    images = {}
    for image in (
        Image.objects.filter(job__in=page_jobs.values("pk"))
        .annotate(
            job_prompt=F("job__prompt"),
            rank=Window(RowNumber(), partition_by=[F("job__prompt")], order_by=newest_first),
        )
        .filter(rank__lte=IMAGES_PER_PROMPT)
        .order_by("-created_at", "-pk")
    ):
        images.setdefault(image.job_prompt, []).append(image)
    favourites = set(
        PromptFavourite.objects.filter(
            user=user, prompt_hash__in=[prompt_key(prompt) for prompt in prompts]
        ).values_list("prompt_hash", flat=True)
    )
    remember_roles(user, [job.project.team for job in latest.values()])

    entries = []
    for group in groups:
        job = latest[group["prompt"]]
        entry = PromptEntry(
            prompt=group["prompt"],
            runs=group["runs"],
            image_count=image_counts.get(group["prompt"], 0),
            latest=job,
            images=images.get(group["prompt"], []),
        )
        entry.is_favourite = entry.key in favourites
        entry.may_reuse = can(user, "generate", job.project)
        entries.append(entry)
    return entries, has_more


def remember_roles(user, teams):
    """Load the user's role in every team at once, so permission checks on a page of
    entries cost one query, not one per team."""
    roles = dict(Membership.objects.filter(user=user).values_list("team_id", "role"))
    for team in teams:
        team.__dict__.setdefault("_roles", {})[user.pk] = roles.get(team.pk)
