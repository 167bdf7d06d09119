"""Stuck or inconsistent jobs, training runs and images, for `manage.py jobs_doctor`.

It only reports: the sweeper (generation.sweeper) repairs what it can, and anything the
doctor still finds after a few sweeps needs a person.
"""

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from gallery.models import THUMBNAIL_SIZES, Image
from generation.models import GenerationJob, JobStatus
from generation.training.models import TrainingRun

CHECKS = {
    "lease_lapsed": "running, but its worker's lease lapsed (the worker died) and no sweeper "
    "took it back",
    "queued_too_long": "queued for longer than the limit: are workers consuming its queue?",
    "out_of_attempts": "at or over STUDIO_JOB_MAX_ATTEMPTS but not failed",
    "finished_without_images": "finished, but no image was saved",
    "image_without_thumbnails": "an image of a finished job has no thumbnails "
    "(manage.py backfill_thumbnails)",
    "image_without_scan": "an image has no moderation scan (manage.py scan_images)",
}


@dataclass(frozen=True)
class Finding:
    check: str
    kind: str  # "job", "training_run" or "image"
    id: int
    detail: str

    def as_dict(self):
        return asdict(self)


def lease_detail(row):
    lease = (
        f"lapsed at {row.lease_expires_at:%Y-%m-%d %H:%M:%S}"
        if row.lease_expires_at
        else "never set"
    )
    return (
        f"running on {row.worker or 'an unknown worker'}, lease {lease}, "
        f"attempt {row.attempts} of {settings.STUDIO_JOB_MAX_ATTEMPTS}"
    )


def jobs_doctor_findings(*, queued_minutes, grace_minutes, limit, now=None):
    """({check: how many}, [Finding, at most `limit` per check]).

    `grace_minutes`: how long the sweeper and the CPU queue get before a lapsed lease or
    a finished job's missing images, thumbnails or scan count."""
    now = now or timezone.now()
    settled = now - timedelta(minutes=grace_minutes)
    counts, findings = {}, []

    def report(check, kind, rows, detail):
        counts[check] = counts.get(check, 0) + rows.count()
        findings.extend(
            Finding(check, kind, row.pk, detail(row)) for row in rows.order_by("pk")[:limit]
        )

    max_attempts = settings.STUDIO_JOB_MAX_ATTEMPTS
    for kind, model in (("job", GenerationJob), ("training_run", TrainingRun)):
        report(
            "lease_lapsed",
            kind,
            model.objects.filter(status=JobStatus.RUNNING).filter(
                Q(lease_expires_at__lt=settled) | Q(lease_expires_at__isnull=True)
            ),
            lease_detail,
        )
        report(
            "queued_too_long",
            kind,
            model.objects.filter(
                status=JobStatus.QUEUED,
                created_at__lt=now - timedelta(minutes=queued_minutes),
                attempts__lt=max_attempts,
            ),
            lambda row: f"queued since {row.created_at:%Y-%m-%d %H:%M:%S}",
        )
        # A running row's last allowed attempt is normal while its lease holds.
        report(
            "out_of_attempts",
            kind,
            model.objects.filter(
                Q(status=JobStatus.QUEUED, attempts__gte=max_attempts)
                | Q(status=JobStatus.RUNNING, attempts__gt=max_attempts)
            ),
            lambda row: f"{row.status} after {row.attempts} attempts of {max_attempts}",
        )

    # Within the undo window a deleted image is still a row, so none at all means none
    # was saved; later, purged images would look the same, so older jobs are not judged.
    undo_window = timedelta(seconds=settings.STUDIO_DELETE_UNDO_SECONDS)
    report(
        "finished_without_images",
        "job",
        GenerationJob.objects.filter(
            status=JobStatus.FINISHED,
            finished_at__lt=settled,
            finished_at__gte=now - undo_window,
        ).exclude(Exists(Image.all_objects.filter(job=OuterRef("pk")))),
        lambda row: f"finished at {row.finished_at:%Y-%m-%d %H:%M:%S} with no image",
    )
    made = Image.objects.filter(created_at__lt=settled)
    report(
        "image_without_thumbnails",
        "image",
        made.filter(job__status=JobStatus.FINISHED).exclude(
            thumbnails__has_keys=[str(size) for size in THUMBNAIL_SIZES]
        ),
        lambda row: f"of job {row.job_id}, missing sizes "
        + ", ".join(str(size) for size in THUMBNAIL_SIZES if not row.thumbnail_name(size)),
    )
    report(
        "image_without_scan",
        "image",
        made.filter(scan__isnull=True),
        lambda row: f"made {row.created_at:%Y-%m-%d %H:%M:%S}, moderation {row.moderation_status}",
    )
    return {check: count for check, count in counts.items() if count}, findings
