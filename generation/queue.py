"""The order in which workers take queued jobs: by priority, then users take turns.

A Celery queue is first in, first out, so one user's 50 jobs would run before anyone
else's one. Instead every message only says "a job is waiting": the worker that takes it
claims whichever queued job is fairest to run now (`job_claim_next`). There is one message
per queued job, so every job still runs once.
"""

from collections import defaultdict
from datetime import UTC, datetime

from django.db.models import Count, Max, Q

from generation.models import GenerationJob, JobStatus

_NEVER = datetime.min.replace(tzinfo=UTC)


def service_order():
    """Ids of every queued job, the next to run first.

    Higher priority first. Within a priority, one job per user per round, the users in the
    order: fewest jobs running now, then longest since one of theirs started; each user's
    own jobs oldest first. Two queries, whatever the length of the queue.
    """
    queued = list(
        GenerationJob.objects.queued()
        .order_by("created_at", "id")
        .values_list("pk", "created_by_id", "priority")
    )
    if not queued:
        return []
    users = {user_id for _, user_id, _ in queued}
    is_running = Q(status=JobStatus.RUNNING)
    # Per user, their jobs running now and when one of theirs last started, in one query.
    running, last_started = {}, {}
    for user_id, running_now, started in (
        GenerationJob.objects.filter(is_running | Q(started_at__isnull=False), created_by__in=users)
        .values_list("created_by")
        .annotate(running=Count("pk", filter=is_running), last_started=Max("started_at"))
    ):
        running[user_id] = running_now
        if started is not None:
            last_started[user_id] = started

    by_priority = defaultdict(lambda: defaultdict(list))
    for pk, user_id, priority in queued:
        by_priority[priority][user_id].append(pk)
    order = []
    for priority in sorted(by_priority, reverse=True):
        lines = by_priority[priority]
        # Dicts keep insertion order: ties go to the user whose oldest job came first.
        turns = sorted(lines, key=lambda u: (running.get(u, 0), last_started.get(u, _NEVER)))
        for round_number in range(max(len(jobs) for jobs in lines.values())):
            order.extend(lines[u][round_number] for u in turns if round_number < len(lines[u]))
    return order


def no_wait_estimate(*, positions):
    return {}


# {job id: seconds until it is done} for the running jobs and the queued ones in `positions`
# (GenerationJob.objects.positions()). Quotas measure the workers' speed and register their
# estimator from AppConfig.ready(); without one, no job shows a time left.
wait_estimator = no_wait_estimate


def wait_estimator_register(estimator):
    global wait_estimator
    wait_estimator = estimator
