from celery import shared_task


@shared_task(name="generation.tasks.run_generation_job", acks_late=True)
def run_generation_job(job_id):
    # Imported here so web nodes, which only enqueue, never import torch.
    from generation.execution import job_execute

    job_execute(job_id=job_id)
