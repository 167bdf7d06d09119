"""The names of the events browsers receive (a payload's "type"), in one place.

Python publishes `EventType` members; the pages that listen render the same members as a
JSON data block (`{% event_types_script %}`, id "event-types") that static/js/studio.js
and training.js switch on, so a name exists once and a renamed event can't leave a page
listening for the old one. tests/realtime/test_event_types.py fails when Python or JS uses a name
this module lacks.
"""

from enum import StrEnum


class EventType(StrEnum):
    # A project's generation jobs (GenerationJob.event_payload).
    JOB_QUEUED = "job.queued"
    JOB_STARTED = "job.started"
    # What a job waits for before its first step: stage "worker" (a cold worker imports
    # torch and diffusers) or "loading" (`loading`: the model's name, `loaded` of `of`
    # models the job needs loaded so far; `loaded` == `of` once all are).
    JOB_PREPARING = "job.preparing"
    JOB_PROGRESS = "job.progress"
    JOB_FINISHED = "job.finished"
    JOB_FAILED = "job.failed"
    JOB_CANCELED = "job.canceled"
    # Only in a running job's state read over HTTP (GET /jobs/<id>/): sockets announce a
    # running job by job.started and job.progress.
    JOB_RUNNING = "job.running"
    # Every waiting job's place in line, one event per project: [[job id, place], ...].
    QUEUE_POSITIONS = "queue.positions"
    # Many jobs of a project canceled at once: their ids.
    JOBS_CANCELED = "jobs.canceled"
    # An image's moderation status changed (its scan, or a moderator's decision).
    IMAGE_MODERATED = "image.moderated"
    # A project's training runs (TrainingRun.event_payload).
    TRAINING_QUEUED = "training.queued"
    TRAINING_STARTED = "training.started"
    TRAINING_PROGRESS = "training.progress"
    TRAINING_SAMPLE = "training.sample"
    TRAINING_LOG = "training.log"
    TRAINING_FINISHED = "training.finished"
    TRAINING_FAILED = "training.failed"
    TRAINING_CANCELED = "training.canceled"


# A job's state read over HTTP is typed by its status (a JobStatus value).
JOB_STATUS_EVENT_TYPES = {
    "queued": EventType.JOB_QUEUED,
    "running": EventType.JOB_RUNNING,
    "finished": EventType.JOB_FINISHED,
    "failed": EventType.JOB_FAILED,
    "canceled": EventType.JOB_CANCELED,
}


def event_types_for_scripts() -> dict[str, str]:
    """{member name: wire name}, what the pages' scripts read as EVENT.<NAME>."""
    return {member.name: member.value for member in EventType}
