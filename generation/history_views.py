"""Prompt history pages: every prompt the user ran, across projects and per project, with
search, favourites and one-click reuse."""

from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from generation import prompt_history
from generation.models import PromptFavourite, prompt_key
from generation.views import job_for, project_for
from studio.redirects import safe_next_url

TEMPLATE = "generation/prompt_history.html"


MAX_PAGE = 10_000


def page_number(request):
    try:
        page = int(request.GET.get("page", 1))
    except (TypeError, ValueError):
        return 1
    return page if 1 <= page <= MAX_PAGE else 1


def history_response(request, jobs, context):
    """The whole page, or for HTMX the results (search and filters) or the next page."""
    query = prompt_history.clean_query(request.GET.get("q", ""))
    favourites_only = request.GET.get("favourites") == "1"
    page = page_number(request)
    entries, has_more = prompt_history.prompt_entries(
        user=request.user,
        jobs=jobs,
        query=query,
        favourites_only=favourites_only,
        page=page,
    )
    context = {
        **context,
        "entries": entries,
        "has_more": has_more,
        "next_page": page + 1,
        "page": page,
        "q": query,
        "favourites_only": favourites_only,
        "filtered": bool(query or favourites_only),
    }
    template = TEMPLATE
    if request.htmx and not request.htmx.history_restore_request:
        template += "#entries" if page > 1 else "#results"
    response = render(request, template, context)
    # The same address answers with a page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def prompt_history_view(request):
    """The user's prompts in every project they may still see."""
    return history_response(
        request, prompt_history.user_jobs(request.user), {"project": None, "everyone": False}
    )


@login_required
@require_GET
def project_prompt_history(request, project_id):
    """One project's prompts: the user's own, or everyone's in the project."""
    project = project_for(request.user, project_id, "view")
    everyone = request.GET.get("who") == "everyone"
    jobs = prompt_history.project_jobs(project, None if everyone else request.user)
    return history_response(request, jobs, {"project": project, "everyone": everyone})


@login_required
@require_POST
def prompt_favourite_toggle(request, job_id):
    """Star or unstar the prompt of a job the user may see; stars are the user's own."""
    job = job_for(request.user, job_id, "view")
    favourites = PromptFavourite.objects.filter(
        user=request.user, prompt_hash=prompt_key(job.prompt)
    )
    deleted, _ = favourites.delete()
    is_favourite = not deleted
    if is_favourite:
        try:
            with transaction.atomic():
                PromptFavourite.objects.create(
                    user=request.user, prompt=job.prompt, negative_prompt=job.negative_prompt
                )
        except IntegrityError:
            pass  # A second click raced the first: it is starred either way.
    next_url = safe_next_url(request, request.POST.get("next"), fallback="prompt_history")
    if not request.htmx:
        return redirect(next_url)
    context = {"job": job, "is_favourite": is_favourite, "next_url": next_url}
    return render(request, f"{TEMPLATE}#favourite-button", context)
