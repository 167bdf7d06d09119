"""A GPU worker preloads its models at start, reports what is warm and stops cleanly."""

from generation.tasks import finish_running_batches, preload_models, warm_models
from gpu_workers import pipelines, runner
from gpu_workers.config import WorkerConfig


def test_preloads_the_models_named_in_the_environment(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_PRELOAD_MODELS", f" {tiny_model_dir} , ")

    preload_models()

    assert str(tiny_model_dir) in pipelines.loaded_sources(WorkerConfig.from_env())
    assert str(tiny_model_dir) in warm_models(None)["warm_models"]


def test_without_preload_nothing_is_loaded_at_start(monkeypatch):
    monkeypatch.delenv("STUDIO_PRELOAD_MODELS", raising=False)

    def no_engine(config):
        raise AssertionError("no engine should start without models to preload")

    monkeypatch.setattr(runner, "shared_engine", no_engine)

    preload_models()


def test_shutdown_stops_the_engines_and_a_new_one_starts_on_demand(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    engine = runner.shared_engine(WorkerConfig.from_env())

    finish_running_batches()

    assert engine._thread is not None and not engine._thread.is_alive()
    assert runner.shared_engine(WorkerConfig.from_env()) is not engine
