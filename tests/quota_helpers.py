"""Usage records and fake worker results for the quota and budget tests."""

from PIL import Image as PILImage

from gpu_workers.requests import GenerationResult
from studio.quotas.models import UsageKind, UsageRecord


def charge(team, user, gpu_seconds, *, at=None, model_name="tiny-sd15", images=1):
    fields = {"at": at} if at is not None else {}
    return UsageRecord.objects.create(
        team=team, user=user, kind=UsageKind.GENERATION, model_name=model_name,
        images=images, gpu_seconds=gpu_seconds, estimated_gpu_seconds=gpu_seconds, **fields,
    )


def fake_result(*, elapsed_s, batch_size, size=(64, 64), seed=1):
    return GenerationResult(
        images=[PILImage.new("RGB", size, (90, 60, 30))], seed=seed, sampler="Euler",
        schedule_type=None, scheduler_class="EulerDiscreteScheduler", scheduler_config={},
        elapsed_s=elapsed_s, batch_size=batch_size,
    )
