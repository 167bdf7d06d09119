import logging
import os
import sys

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from celery.worker.control import inspect_command

from generation.leases import TRANSIENT_ERRORS
from studio.storage import uncommitted_files_removed

logger = logging.getLogger(__name__)


# A database that can't be reached now is waited out with backoff; the message is never
# acked as done for it. The sweeper covers the rest.
TRANSIENT = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": None,
}


@shared_task(name="generation.tasks.run_generation_job", acks_late=True, **TRANSIENT)
def run_generation_job(job_id):
    if "generation.execution" not in sys.modules:
        from generation.services import job_announce_worker_starting

        job_announce_worker_starting(job_id=job_id)
    # Imported here so web nodes, which only enqueue, never import torch.
    from generation.execution import job_execute

    # An image's file goes with its row should the job's transaction roll back.
    with uncommitted_files_removed():
        job_execute(job_id=job_id)


@shared_task(name="generation.tasks.run_training", acks_late=True, **TRANSIENT)
def run_training(run_id):
    # Imported here so web nodes, which only enqueue, never import torch.
    from generation.training.execution import training_execute

    training_execute(run_id=run_id)


@shared_task(name="generation.tasks.hash_model", acks_late=True)
def hash_model(model_id, source):
    """A1111's "Model hash" of a single-file library model (CPU queue); idempotent."""
    from generation.library.hashes import model_hash_compute

    model_hash_compute(model_id=model_id, source=source)


@shared_task(name="generation.tasks.sweep", acks_late=True)
def sweep():
    """Celery beat runs this every STUDIO_SWEEP_INTERVAL_S (generation.sweeper)."""
    from generation.sweeper import sweep as sweep_once

    sweep_once()


def preload_sources():
    """STUDIO_PRELOAD_MODELS: comma-separated Hub ids or folders a worker loads at start."""
    raw = os.environ.get("STUDIO_PRELOAD_MODELS", "")
    return [source.strip() for source in raw.split(",") if source.strip()]


@worker_ready.connect
def preload_models(**_):
    sources = preload_sources()
    if not sources:
        return
    from gpu_workers.config import WorkerConfig
    from gpu_workers.runner import shared_engine

    engine = shared_engine(WorkerConfig.from_env())
    engine.preload(sources)
    logger.info("Preloaded on %s: %s", engine.config.device, ", ".join(engine.warm_models()))


@worker_shutdown.connect
def finish_running_batches(**_):
    # Celery's warm shutdown has already waited for running tasks, so nothing is left
    # mid-batch; this stops the engine loops cleanly. CPU workers never loaded torch.
    runner = sys.modules.get("gpu_workers.runner")
    if runner is not None:
        runner.shutdown_engines()


@inspect_command()
def warm_models(state):
    """`celery -A studio inspect warm_models`: the models each worker has loaded, least
    recently used first."""
    from gpu_workers.pipelines import loaded_sources

    return {"warm_models": loaded_sources()}
