"""Where work goes once committed: a Celery queue, or the embedded worker's threads.

The one place that knows the two modes apart. Messages only wake workers: the database
says what work there is, and the sweeper (generation.sweeper) sends new messages for work
whose message was lost, counting what still waits with `waiting`.
"""

import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from celery import Task

logger = logging.getLogger(__name__)


def send(task: "Task", *args: Any, queue: str) -> None:
    """Run the Celery task `task(*args)` on a worker of `queue`."""
    if settings.CELERY_BROKER_URL:
        task.apply_async(args=list(args), queue=queue)
    else:
        from studio import embedded_worker

        embedded_worker.submit(queue, task, *args)


def waiting(queue: str) -> int:
    """Messages in `queue` that no worker has taken yet (0 when the broker can't say)."""
    if not settings.CELERY_BROKER_URL:
        from studio import embedded_worker

        return embedded_worker.waiting(queue)
    from studio.celery import app

    with app.connection_for_read() as connection:
        # A passive declare asks the broker for the queue's length without changing it; a
        # queue that doesn't exist yet (a broker restarted empty) holds nothing.
        try:
            return connection.default_channel.queue_declare(
                queue=queue, passive=True
            ).message_count
        except connection.channel_errors:
            return 0
