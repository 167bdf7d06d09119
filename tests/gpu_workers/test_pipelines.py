import threading

import pytest
from diffusers import StableDiffusionPipeline

from gpu_workers import pipelines
from gpu_workers.pipelines import load_pipeline, loaded_sources


@pytest.fixture
def from_pretrained_calls(monkeypatch, tiny_sd15):
    """Record every from_pretrained call; whatever the source, the tiny model is loaded."""
    calls = []
    real_from_pretrained = StableDiffusionPipeline.from_pretrained

    def recording_from_pretrained(source, **kwargs):
        calls.append((source, kwargs))
        return real_from_pretrained(str(tiny_sd15), **kwargs)

    monkeypatch.setattr(
        pipelines.StableDiffusionPipeline, "from_pretrained", recording_from_pretrained
    )
    # The pipeline class is checked first (model_index.json only); offline, a Hub id's is
    # the tiny model's too.
    tiny_class = pipelines.pipeline_class_name(str(tiny_sd15))
    monkeypatch.setattr(pipelines, "pipeline_class_name", lambda source: tiny_class)
    return calls


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_hub_ids_and_local_folders_take_the_same_code_path(
    tiny_sd15, cpu_config, from_pretrained_calls
):
    load_pipeline("runwayml/stable-diffusion-v1-5", cpu_config)
    load_pipeline(str(tiny_sd15), cpu_config)

    (hub_source, hub_kwargs), (folder_source, folder_kwargs) = from_pretrained_calls
    assert (hub_source, folder_source) == ("runwayml/stable-diffusion-v1-5", str(tiny_sd15))
    assert hub_kwargs == folder_kwargs
    assert folder_kwargs == {
        "dtype": cpu_config.dtype,
        "safety_checker": None,
        "requires_safety_checker": False,
    }
    assert loaded_sources() == ["runwayml/stable-diffusion-v1-5", str(tiny_sd15)]


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_pipeline_stays_loaded_between_jobs(tiny_sd15, cpu_config, from_pretrained_calls):
    first = load_pipeline(str(tiny_sd15), cpu_config)
    second = load_pipeline(str(tiny_sd15), cpu_config)

    assert second is first
    assert len(from_pretrained_calls) == 1
    assert loaded_sources() == [str(tiny_sd15)]


@pytest.mark.usefixtures("empty_pipeline_cache")
def test_concurrent_first_requests_load_once(tiny_sd15, cpu_config, from_pretrained_calls):
    threads_count = 4
    start = threading.Barrier(threads_count)
    loaded = []

    def load():
        start.wait()
        loaded.append(load_pipeline(str(tiny_sd15), cpu_config))

    threads = [threading.Thread(target=load) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(from_pretrained_calls) == 1
    assert len(loaded) == threads_count
    assert all(pipe is loaded[0] for pipe in loaded)
