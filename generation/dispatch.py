"""Where generation work goes once committed (studio.dispatch: a queue or the embedded
worker). A message only wakes a worker: it runs whichever job is fairest then."""

from django.conf import settings

from studio.dispatch import send


def enqueue_generation(job_id):
    from generation.tasks import run_generation_job

    send(run_generation_job, job_id, queue=settings.STUDIO_GPU_QUEUE)


def enqueue_training(run_id):
    from generation.tasks import run_training

    send(run_training, run_id, queue=settings.STUDIO_TRAIN_QUEUE)
