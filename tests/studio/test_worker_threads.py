"""A GPU worker takes as many jobs at once as its engine batches (STUDIO_MAX_BATCH, by default
sized from the GPU's memory), not a thread count of its own (issue #16); other workers keep
Celery's default, and --concurrency decides for any worker."""

import pytest

from studio.celery import app


@pytest.fixture
def worker_threads(monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_BATCH", "13")

    def threads(**options):
        worker = app.Worker(pool_cls="threads", quiet=True, **options)
        return worker.concurrency

    # The app's settings (no worker_concurrency: Celery's default), as they were.
    assert app.conf.worker_concurrency is None
    yield threads
    app.conf.worker_concurrency = None


def test_a_gpu_worker_takes_a_batch_of_jobs(worker_threads):
    assert worker_threads(queues=["gpu"], concurrency=None) == 13


def test_concurrency_given_decides(worker_threads):
    assert worker_threads(queues=["gpu"], concurrency=3) == 3


def test_other_workers_keep_a_thread_per_cpu(worker_threads):
    from billiard import cpu_count

    assert worker_threads(queues=["default", "moderation"], concurrency=None) == cpu_count()
