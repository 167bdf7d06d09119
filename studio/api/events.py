"""Live progress over server-sent events: GET /jobs/{id}/events and GET /projects/{id}/events
stream the events the browser's project socket receives (studio.realtime: events.publish,
EventType), authorised as every API request is (a token or the session; another team's job
or project is a 404).

Each event is one `data:` line holding the socket's JSON payload, whose "type" names it, so
EventSource's onmessage sees them all. The first events are the state now (the job's; the
project's active jobs'), so a client that reconnects is never left wrong by an event it
missed; a comment line every KEEPALIVE_S keeps proxies from closing a quiet stream. A job's
stream ends after its last event (finished, failed or canceled); both end when the caller
loses access (removed from the team, token revoked, signed out), as the socket closes.

The views are async and hold no database connection while they wait: under ASGI a stream
is a coroutine on the server's loop, reading the channel layer's group.
"""

import json
from functools import partial

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.http import StreamingHttpResponse
from ninja import Router

from generation.models import GenerationJob, JobStatus
from studio.api.access import job_for, may_still_view, project_for, request_token
from studio.realtime.event_types import JOB_STATUS_EVENT_TYPES, EventType
from studio.realtime.events import (
    ACCESS_CHANGED_MESSAGE_TYPE,
    EVENT_MESSAGE_TYPE,
    SESSION_ENDED_MESSAGE_TYPE,
    GroupListener,
    user_access_group,
)

router = Router(tags=["events"])

EVENT_STREAM_TYPE = "text/event-stream"
KEEPALIVE_S = 15
KEEPALIVE = b": keep-alive\n\n"
ENDED_TYPES = {EventType.JOB_FINISHED, EventType.JOB_FAILED, EventType.JOB_CANCELED}
# A project's stream starts with the state of at most this many active jobs, oldest first.
MAX_FIRST_JOBS = 100

# One event's JSON, as the schema documents it (the fields every job event carries; other
# events carry theirs, named by "type").
EVENT_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": [member.value for member in EventType]},
        "job_id": {"type": "integer"},
        "project_id": {"type": "integer"},
        "status": {"type": "string", "enum": list(JobStatus.values)},
        "step": {"type": "integer"},
        "total": {"type": "integer"},
    },
    "additionalProperties": True,
}


def stream_doc(description):
    return {
        "responses": {
            200: {
                "description": description,
                "content": {EVENT_STREAM_TYPE: {
                    "schema": {
                        "type": "string",
                        "description": "Server-sent events: each `data:` line is one event's "
                                       "JSON (the Event schema); `:` lines are keep-alives.",
                    },
                }},
            },
        },
    }


def job_state(job, position):
    """A job's state now, as the studio's GET /jobs/<id>/ gives it to the browser."""
    return job.event_payload(
        type=JOB_STATUS_EVENT_TYPES[job.status],
        position=position,
        error=job.error,
        images=[image.event_payload() for image in job.images.all()],
    )


def released(read):
    """read(), run in a thread, that gives its database connection back when done: a stream
    lasts minutes and must not hold one of the process's pooled connections meanwhile."""

    @sync_to_async
    def run(*args):
        try:
            return read(*args)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return run


@released
def job_now(job_id):
    job = GenerationJob.objects.prefetch_related("images").filter(pk=job_id).first()
    return None if job is None else job_state(job, job.queue_position())


@released
def active_jobs_now(project):
    jobs = list(
        GenerationJob.objects.filter(project=project, status__in=[JobStatus.QUEUED,
                                                                  JobStatus.RUNNING])
        .prefetch_related("images").order_by("pk")[:MAX_FIRST_JOBS]
    )
    queued = any(job.status == JobStatus.QUEUED for job in jobs)
    positions = GenerationJob.objects.positions() if queued else {}
    return [job_state(job, positions.get(job.pk)) for job in jobs]


async def job_first(job_id):
    """([events], ended): the job's state; a job gone (its project deleted) ends the stream."""
    state = await job_now(job_id)
    if state is None:
        return [], True
    return [state], state["type"] in ENDED_TYPES


async def job_select(job_id, payload):
    """([events], ended): what of a project event concerns the job."""
    kind = payload.get("type")
    if payload.get("job_id") == job_id:
        return [payload], kind in ENDED_TYPES
    if kind == EventType.QUEUE_POSITIONS:
        mine = [entry for entry in payload["positions"] if entry[0] == job_id]
        return ([{**payload, "positions": mine}] if mine else []), False
    if kind == EventType.JOBS_CANCELED and job_id in payload["job_ids"]:
        return await job_first(job_id)
    return [], False


async def project_first(project):
    return await active_jobs_now(project), False


async def project_select(payload):
    return [payload], False


async def still_allowed(request, message, project):
    """After a server-side message to the user's streams: may this one go on?"""
    if message["type"] == SESSION_ENDED_MESSAGE_TYPE:
        signed_out = request.session.session_key == message["session_key"]
        return request_token(request) is not None or not signed_out
    if message["type"] == ACCESS_CHANGED_MESSAGE_TYPE:
        return await released(may_still_view)(request, project)
    return True


def sse(payload):
    return f"data: {json.dumps(payload, cls=DjangoJSONEncoder)}\n\n".encode()


async def event_stream(request, project, user_id, first, select):
    """The stream's body: first() (the state now), then what select(payload) makes of each
    project event; either says when it ends."""
    groups = [project.events_group(), user_access_group(user_id)]
    async with GroupListener(groups) as listener:
        # Joined before access is checked again and the state is read: a change of access
        # or an event published while the response started is not missed.
        if not await released(may_still_view)(request, project):
            return
        payloads, ended = await first()
        for payload in payloads:
            yield sse(payload)
        while not ended:
            message = await listener.receive(KEEPALIVE_S)
            if message is None:
                yield KEEPALIVE
            elif message["type"] == EVENT_MESSAGE_TYPE:
                for event in message["payloads"]:
                    payloads, ended = await select(event)
                    for payload in payloads:
                        yield sse(payload)
                    if ended:
                        break
            elif not await still_allowed(request, message, project):
                return


def event_stream_response(body):
    response = StreamingHttpResponse(body, content_type=EVENT_STREAM_TYPE)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@released
def caller_and(find, *args):
    """find(*args) and the caller's user id, read in a thread (the user is loaded lazily)."""
    return find(*args), args[0].user.pk


@router.get(
    "/jobs/{job_id}/events",
    summary="A job's live progress (server-sent events)",
    description=(
        "The job's state now, then its events (queued, preparing, started, progress, "
        "finished with its images, failed, canceled) as the studio's page receives them; "
        "the stream ends after the job's last event."
    ),
    openapi_extra=stream_doc("The job's events, its state now first."),
)
async def job_events(request, job_id: int):
    job, user_id = await caller_and(job_for, request, job_id, "view")
    body = event_stream(
        request, job.project, user_id, partial(job_first, job.pk), partial(job_select, job.pk)
    )
    return event_stream_response(body)


@router.get(
    "/projects/{project_id}/events",
    summary="A project's live events (server-sent events)",
    description=(
        "The state of the project's queued and running jobs now, then every event the "
        "studio's page of the project receives (jobs, queue positions, moderation, training)."
    ),
    openapi_extra=stream_doc("The project's events, its active jobs' state first."),
)
async def project_events(request, project_id: int):
    project, user_id = await caller_and(project_for, request, project_id, "view")
    body = event_stream(
        request, project, user_id, partial(project_first, project), project_select
    )
    return event_stream_response(body)
