"""Starting, preloading and shutting down an engine."""

import dataclasses
import threading

import pytest

from gpu_workers.requests import WorkerShuttingDown


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_preloaded_models_are_reported_warm(make_engine, tiny_request):
    engine = make_engine()
    assert engine.warm_models() == []

    engine.preload([tiny_request.model_source])

    assert engine.warm_models() == [tiny_request.model_source]


def test_shutdown_finishes_the_running_batch_and_fails_the_queued_ones(make_engine, tiny_request):
    running, release = threading.Event(), threading.Event()

    def hold_at_first_step(step, total):
        running.set()
        release.wait(timeout=30)

    engine = make_engine(max_wait_ms=0).start()
    running_job = engine.submit(tiny_request, on_step=hold_at_first_step)
    assert running.wait(timeout=30)
    queued_job = engine.submit(dataclasses.replace(tiny_request, steps=3))

    engine.shutdown(wait=False)
    with pytest.raises(WorkerShuttingDown, match="before this job started"):
        queued_job.result(timeout=30)
    with pytest.raises(WorkerShuttingDown, match="takes no new jobs"):
        engine.submit(tiny_request)
    release.set()

    assert running_job.result(timeout=30).images
    engine.shutdown(wait=True)  # returns once the loop has ended
    assert running_job.done()


def test_an_engine_starts_once(make_engine):
    engine = make_engine().start()
    with pytest.raises(RuntimeError, match="already started"):
        engine.start()
