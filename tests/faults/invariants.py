"""What must hold after any fault: every job final, exactly one image per requested image,
no duplicate rows, no orphan files, and every finished image thumbnailed and scanned."""

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from gallery.models import THUMBNAIL_SIZES, Image
from gallery.orphans import orphan_files_find
from generation.models import GenerationJob, JobStatus
from studio.moderation.models import ImageScan
from tests.faults.workload import polled, wait_for_final


def invariant_problems(job_ids, media_root, failures_allowed=()):
    """Every broken invariant as one line naming the job, image or file ([] when none),
    and whether any is a thumbnail or scan that the CPU queue may still be making. A job
    that did not finish is a problem unless its error starts with one of
    `failures_allowed`; an error that names a server path always is."""
    problems, pending = [], False
    jobs = list(GenerationJob.objects.filter(pk__in=job_ids).order_by("pk"))
    images = list(Image.all_objects.filter(job__in=job_ids).order_by("pk"))
    by_job = Counter(image.job_id for image in images)
    for job in jobs:
        if job.status != JobStatus.FINISHED and not job.error.startswith(
            tuple(failures_allowed)
        ):
            problems.append(f"job {job.pk} {job.status} (attempts {job.attempts}): {job.error}")
        if str(media_root) in job.error:
            problems.append(f"job {job.pk}: its error shows a server path: {job.error}")
        expected = job.batch_size if job.status == JobStatus.FINISHED else 0
        if by_job[job.pk] != expected:
            problems.append(
                f"job {job.pk} ({job.status}, attempts {job.attempts}): {by_job[job.pk]} "
                f"image rows, expected {expected}" + (f"; error: {job.error}" if job.error else "")
            )
    for (job_id, seed), count in Counter((i.job_id, i.seed) for i in images).items():
        if count > 1:
            problems.append(f"job {job_id}: {count} image rows with seed {seed}")
    scanned = set(ImageScan.objects.filter(image__in=images).values_list("image_id", flat=True))
    referenced = set()
    for image in images:
        referenced.add(image.file.name)
        referenced.update(image.thumbnails.values())
        if not (Path(media_root) / image.file.name).is_file():
            problems.append(f"image {image.pk} (job {image.job_id}): no file {image.file.name}")
        missing = [str(s) for s in THUMBNAIL_SIZES if not image.thumbnails.get(str(s))]
        pending = pending or bool(missing) or image.pk not in scanned
        if missing:
            problems.append(f"image {image.pk} (job {image.job_id}): no {'/'.join(missing)} "
                            "thumbnail")
        if image.pk not in scanned:
            problems.append(f"image {image.pk} (job {image.job_id}): not scanned")
    for path in sorted(Path(media_root).rglob("*")):
        name = path.relative_to(media_root).as_posix()
        if path.is_file() and name not in referenced:
            problems.append(f"orphan file {name}")
    return problems, pending


def assert_invariants(job_ids, media_root, *, failures_allowed=(), timeout=240,
                      thumbnails_timeout=60, after_crash=False):
    """Wait for every job to end, then for the CPU queue's thumbnails and scans to catch
    up, then fail with every broken invariant. `after_crash`: first do what the README says
    to do after a crash, `purge_orphan_files --delete` (a worker SIGKILLed between writing
    an image and committing its row leaves that file), without its age guard, since by then
    nothing is being written."""
    wait_for_final(job_ids, timeout)
    deadline = time.monotonic() + thumbnails_timeout
    while True:
        found = polled(lambda: invariant_problems(job_ids, media_root, failures_allowed))
        if found is not None and (not found[1] or time.monotonic() > deadline):
            break
        assert time.monotonic() < deadline, "the database stayed unreachable"
        time.sleep(1)
    if after_crash:
        orphans = orphan_files_find(root=str(media_root), older_than=timedelta(0))
        for name in [*orphans.temporary, *(name for name, _ in orphans.unreferenced)]:
            (Path(media_root) / name).unlink()
        found = polled(lambda: invariant_problems(job_ids, media_root, failures_allowed))
    problems = found[0]
    assert problems == [], f"{len(problems)} invariants broken:\n" + "\n".join(problems)
