"""What a job costs in GPU-seconds before it runs: its work (megapixel-steps, every pass,
ControlNet and IP-Adapter weighted) times seconds per megapixel-step, as the workers
measured it for the model's family, or from a table where none has yet."""

import functools
from datetime import timedelta

from django.utils import timezone

from studio.quotas.models import WorkerReport

# Seconds one denoising step of one megapixel takes for one image on a reference GPU
# (A100/H100 class, fp16, classifier-free guidance): SDXL's UNet does about twice the work
# per pixel of SD 1.x/2.x's (13.5 vs 6.1 TFLOP per megapixel-step, docs/BENCHMARKS.md).
STEP_SECONDS_PER_MEGAPIXEL = {"sd15": 0.15, "sd2": 0.15, "sdxl": 0.3}
DEFAULT_STEP_SECONDS = 0.3  # a family the table lacks: the costlier one
DECODE_STEPS = 2  # the VAE decode after each pass, in steps of work
CONTROLNET_EXTRA = 0.5  # a ControlNet runs beside the UNet: about half of it again
IP_ADAPTER_EXTRA = 0.1  # extra attention on the image prompt's tokens
# Workers not seen for this long no longer calibrate estimates.
REPORT_MAX_AGE = timedelta(days=1)


def job_work(job):
    """Megapixel-steps one image of `job` (saved or not) takes, every pass included."""
    work = (job.first_pass_steps() + DECODE_STEPS) * job.width * job.height / 1e6
    if job.has_hires_fix():
        width, height = job.hires_size()
        work += (job.hires_pass_steps() + DECODE_STEPS) * width * height / 1e6
    extra = (CONTROLNET_EXTRA if job.control_model_id else 0) + (
        IP_ADAPTER_EXTRA if job.ip_adapter_model_id else 0
    )
    return work * (1 + extra)


def recent_worker_reports():
    """The reports of the workers seen lately: they calibrate estimates."""
    return list(WorkerReport.objects.filter(last_seen__gte=timezone.now() - REPORT_MAX_AGE))


def step_seconds(family, *, reports=None):
    """Seconds per megapixel-step for `family`: the average of what workers seen lately
    measured (`reports`, else read now), else the table's."""
    if reports is None:
        reports = recent_worker_reports()
    measured = [
        report.step_seconds[family] for report in reports if family in report.step_seconds
    ]
    if measured:
        return sum(measured) / len(measured)
    return STEP_SECONDS_PER_MEGAPIXEL.get(family, DEFAULT_STEP_SECONDS)


def job_estimate(job, *, reports=None):
    """GPU-seconds `job` (all of its batch) is expected to take (`reports`: step_seconds)."""
    return step_seconds(job.model.family, reports=reports) * job_work(job) * job.batch_size


# The columns a job's work and step count are read from (job_work, total_steps): jobs alike
# in these cost alike.
WORK_FIELDS = (
    "mode", "steps", "strength", "width", "height", "hires_scale", "hires_steps",
    "hires_strength", "control_model_id", "ip_adapter_model_id", "batch_size",
)


def jobs_seconds_left(*, positions):
    """{job id: seconds until it is done} for every running job and every queued one in
    `positions` ({job id: place in line}, GenerationJob.objects.positions()): what is left
    of the running jobs, then of the queued ones up to each one's turn, at the speed the
    workers measured (job_estimate), shared among the workers seen lately (at least one).

    The studio asks at every poll of its job list, whatever the length of the queue: the
    active jobs are read as plain columns, and each distinct recipe among them is worked
    out once (a long queue holds few)."""
    from generation.models import DiffusionModel, GenerationJob, JobStatus

    reports = recent_worker_reports()

    @functools.cache
    def estimate_and_steps(family, *work):
        recipe = dict(zip(WORK_FIELDS, work, strict=True))
        job = GenerationJob(model=DiffusionModel(family=family), **recipe)
        return job_estimate(job, reports=reports), job.total_steps()

    active = GenerationJob.objects.filter(
        status__in=[JobStatus.RUNNING, JobStatus.QUEUED]
    ).values_list("pk", "status", "progress_step", "model__family", *WORK_FIELDS)
    left, queued = {}, []
    for pk, status, progress_step, family, *work in active:
        estimate, total = estimate_and_steps(family, *work)
        if status == JobStatus.RUNNING:
            left[pk] = estimate * (1 - progress_step / total if total else 1)
        elif pk in positions:
            queued.append((positions[pk], pk, estimate))
    workers = max(1, len(reports))
    work_ahead = sum(left.values())
    for _, pk, estimate in sorted(queued):
        work_ahead += estimate
        left[pk] = work_ahead / workers
    return left
