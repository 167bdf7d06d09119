"""Metrics computed from the database (and the broker) when Prometheus scrapes /metrics.

Every web node reports the same numbers: aggregate them with max(), not sum().
"""

import logging

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from generation.models import GenerationJob, JobStatus
from generation.training.models import TrainingRun

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2


def celery_queues():
    """The Celery queues the studio routes work to, each once."""
    return sorted(
        {
            settings.STUDIO_GPU_QUEUE,
            settings.STUDIO_TRAIN_QUEUE,
            settings.STUDIO_CPU_QUEUE,
            settings.STUDIO_MODERATION_QUEUE,
        }
    )


def broker_queue_depths():
    """{queue: messages waiting} from the broker; raises when it can't be reached."""
    from kombu.exceptions import ChannelError

    from studio.celery import app

    depths = {}
    broker = app.connection_for_read(settings.REDIS_URL, connect_timeout=BROKER_TIMEOUT_S)
    with broker as connection:
        connection.ensure_connection(max_retries=0)
        for queue in celery_queues():
            # A fresh channel per queue: a passive declare of a missing queue closes it.
            with connection.channel() as channel:
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:
                    # Redis drops a queue's key once it is empty.
                    depths[queue] = 0
    return depths


class StudioCollector:
    """Jobs and training runs by state, queued jobs per team and, with a broker, the
    messages waiting in each Celery queue."""

    def collect(self):
        database_up = GaugeMetricFamily(
            "studio_database_up", "1 when the database answered this scrape, else 0."
        )
        try:
            families = list(self.collect_database())
        except DatabaseError:
            logger.exception("Metrics: the database could not be read")
            families = []
        database_up.add_metric([], 1 if families else 0)
        yield database_up
        yield from families
        if settings.REDIS_URL:
            yield from self.collect_broker()

    def collect_database(self):
        jobs = GaugeMetricFamily(
            "studio_jobs", "Generation jobs in each state.", labels=["state"]
        )
        counts = dict(
            GenerationJob.objects.order_by().values_list("status").annotate(n=Count("pk"))
        )
        for state in JobStatus.values:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs

        runs = GaugeMetricFamily(
            "studio_training_runs", "LoRA training runs in each state.", labels=["state"]
        )
        counts = dict(TrainingRun.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for state in JobStatus.values:
            runs.add_metric([state], counts.get(state, 0))
        yield runs

        per_team = GaugeMetricFamily(
            "studio_queued_jobs",
            "Generation jobs waiting to run, per team (teams with none are left out).",
            labels=["team_id", "team"],
        )
        rows = (
            GenerationJob.objects.queued()
            .order_by()
            .values_list("project__team_id", "project__team__name")
            .annotate(n=Count("pk"))
        )
        for team_id, team_name, count in rows:
            per_team.add_metric([str(team_id), team_name], count)
        yield per_team

    def collect_broker(self):
        reachable = GaugeMetricFamily(
            "studio_broker_up", "1 when the Celery broker answered this scrape, else 0."
        )
        try:
            depths = broker_queue_depths()
        except Exception:
            logger.exception("Metrics: the Celery broker could not be reached")
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield reachable
        messages = GaugeMetricFamily(
            "studio_broker_queue_messages",
            "Messages waiting in each Celery queue (not yet taken by a worker).",
            labels=["queue"],
        )
        for queue, count in depths.items():
            messages.add_metric([queue], count)
        yield messages
