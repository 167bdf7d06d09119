"""What a job costs in GPU-seconds before it runs: its work (megapixel-steps, every pass,
ControlNet and IP-Adapter weighted) times seconds per megapixel-step, as the workers
measured it for the model's family, or from a table where none has yet."""

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


def step_seconds(family):
    """Seconds per megapixel-step for `family`: the average of what workers seen lately
    measured, else the table's."""
    seen_since = timezone.now() - REPORT_MAX_AGE
    measured = [
        report.step_seconds[family]
        for report in WorkerReport.objects.filter(last_seen__gte=seen_since)
        if family in report.step_seconds
    ]
    if measured:
        return sum(measured) / len(measured)
    return STEP_SECONDS_PER_MEGAPIXEL.get(family, DEFAULT_STEP_SECONDS)


def job_estimate(job):
    """GPU-seconds `job` (all of its batch) is expected to take."""
    return step_seconds(job.model.family) * job_work(job) * job.batch_size
