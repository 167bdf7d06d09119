"""The HTTP API's overhead on top of the job, on PostgreSQL: server time and job creations/s.

    python -m bench.api --write docs/BENCHMARKS.md        (make bench-api)

Creates a throwaway database (`studio_bench_api`) on the PostgreSQL server at `--postgres`
(default postgres://postgres@127.0.0.1:5432, trust auth), migrates it, makes a team, an
editor with a token, a project, a model, a few queued jobs of other members (so that every
new job gets a real place in line) and finished jobs with real PNG files, then times
/api/v1/ through Django's test client against the real views, middleware, token check,
form, services and quota checks (DEBUG off), each call with `Authorization: Bearer`:

- request → job queued: `POST /api/v1/projects/{id}/jobs`, the server's time from request
  to 201 with the job committed and announced on the channel layer (in-memory here). The
  broker's send is left out (stubbed): it is Celery's, not the API's. Each job is marked
  finished after its call (untimed), so the queue stays as long as it started.
- finished job → response: `GET /api/v1/jobs/{id}`, `GET /api/v1/images/{id}` and
  `GET /api/v1/images/{id}/file` of finished jobs.
- job creations/s: `--threads` clients, each its own database connection, posting jobs for
  `--requests` calls in all; each client marks its job finished after each call.

Rate limits and per-user quotas are set far above what the run asks, so that their checks
run but never refuse. The database is dropped at the end, also on failure.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from unittest import mock

from bench.database import create_database, drop_database, machine, setup_django
from gpu_workers.bench.report import write_section

DATABASE = "studio_bench_api"
SECTION = "api-overhead"
TARGET_P50_MS = 20
# Jobs of other members waiting in line while the benchmark runs.
QUEUED_AHEAD = 5
FINISHED_JOBS = 20
HIGH_LIMIT = str(10**9)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
        help="server URL without a database name (a database of its own is made there)")
    parser.add_argument("--requests", type=int, default=300, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=4,
                        help="concurrent clients for the job creations/s")
    parser.add_argument("--write", type=Path, help="write the section into this markdown file")
    parser.add_argument("--command", default="make bench-api",
                        help="the command named in the section")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--requests and --threads must be at least 1, --warmup at least 0")
    return args


# -- Data -----------------------------------------------------------------------------


def finish(job):
    """What a worker leaves: one image (a real PNG with its infotext), the job finished."""
    from django.utils import timezone
    from PIL import Image as PILImage

    from gallery.services import image_create_from_generation
    from generation.models import GenerationJob, JobStatus
    from gpu_workers.requests import GenerationResult

    result = GenerationResult(
        images=[], seed=job.seed, sampler="Euler", schedule_type=None,
        scheduler_class="EulerDiscreteScheduler", scheduler_config={}, elapsed_s=1.0,
    )
    with mock.patch("gallery.services.image_thumbnails_schedule"), \
            mock.patch("studio.moderation.scanning.image_scan_schedule"):
        image = image_create_from_generation(
            job=job, pil_image=PILImage.new("RGB", (job.width, job.height), (90, 40, 200)),
            result=result,
        )
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FINISHED, started_at=timezone.now(), finished_at=timezone.now()
    )
    return image


def fill():
    from generation.models import DiffusionModel, GenerationJob
    from studio.accounts.models import Membership, Project, Role, Team, User
    from studio.api.tokens import token_create

    team = Team.objects.create(name="Bench team")
    editor = User.objects.create_user("editor", "editor@example.org")
    others = [User.objects.create_user(f"member{n}", f"member{n}@example.org")
              for n in range(QUEUED_AHEAD)]
    for user in [editor, *others]:
        Membership.objects.create(team=team, user=user, role=Role.EDITOR)
    project = Project.objects.create(team=team, name="Bench project", created_by=editor)
    model = DiffusionModel.objects.create(
        name="bench-sd15", source="/models/bench-sd15", default_width=512, default_height=512
    )

    def job(user):
        return GenerationJob.objects.create(
            project=project, created_by=user, model=model, prompt="a lighthouse at dusk",
            steps=25, guidance_scale=7.0, width=64, height=64, seed=42,
        )

    for user in others:
        job(user)  # queued: the new jobs' places in line are counted behind these
    images = [finish(job(editor)) for _ in range(FINISHED_JOBS)]
    secret = token_create(user=editor, team=team, name="bench", role=Role.EDITOR, days=1)[1]
    return {"project": project, "model": model, "secret": secret, "images": images}


# -- Measurements ---------------------------------------------------------------------


def client_for(world):
    from django.test import Client

    return Client(headers={"Authorization": f"Bearer {world['secret']}"})


def recipe(world):
    return {"prompt": "a red fox in the snow, 35mm photo", "model": world["model"].pk,
            "steps": 20, "width": 512, "height": 512}


def timed(call):
    """call()'s response, its wall-clock ms and this process's CPU ms (the CPU time leaves
    out the waits for a core that other work on a loaded machine causes)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    response = call()
    if response.streaming:
        b"".join(response.streaming_content)
    wall = (time.perf_counter() - start) * 1000
    return response, wall, (time.process_time() - cpu_start) * 1000


def job_create_call(client, world):
    """One POST; returns (wall ms, CPU ms, the job's id)."""
    response, wall, cpu = timed(lambda: client.post(
        f"/api/v1/projects/{world['project'].pk}/jobs", recipe(world),
        content_type="application/json",
    ))
    assert response.status_code == 201, (response.status_code, response.content[:300])
    return wall, cpu, response.json()["jobs"][0]["id"]


def query_count(call):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries)


def mark_finished(job_id):
    from generation.models import GenerationJob, JobStatus

    GenerationJob.objects.filter(pk=job_id).update(status=JobStatus.FINISHED)


def percentiles(times, cpu_times, queries):
    times = sorted(times)
    return {
        "p50": statistics.median(times),
        "p95": times[max(0, round(0.95 * len(times)) - 1)],
        "max": times[-1],
        "cpu": statistics.median(cpu_times),
        "calls": len(times),
        "queries": queries,
    }


def timing_calls(module, name, times):
    """Patch module.name with a wrapper that appends each call's wall-clock ms to times."""
    original = getattr(module, name)

    def timed_call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times.append((time.perf_counter() - start) * 1000)

    return mock.patch.object(module, name, timed_call)


def measure_create(world, args):
    """Job creation, and of it the part that is the API's own: the whole call less the
    studio's generate form and job services (studio.api.jobs.create), the work the
    browser's generate request does too."""
    from studio.api import jobs

    client = client_for(world)
    times, cpu_times, form_and_services = [], [], []
    with timing_calls(jobs, "create", form_and_services):
        for n in range(args.warmup + args.requests):
            wall, cpu, job_id = job_create_call(client, world)
            mark_finished(job_id)
            if n >= args.warmup:
                times.append(wall)
                cpu_times.append(cpu)
    queries = query_count(lambda: mark_finished(job_create_call(client, world)[2])) - 1
    numbers = percentiles(times, cpu_times, queries)
    inner = form_and_services[args.warmup:]
    numbers["form_and_services"] = statistics.median(inner)
    numbers["own"] = statistics.median(total - part for total, part in zip(times, inner,
                                                                           strict=True))
    return numbers


def measure_get(world, args, path_of):
    client = client_for(world)
    images = world["images"]
    times, cpu_times = [], []
    for n in range(args.warmup + args.requests):
        path = path_of(images[n % len(images)])
        response, wall, cpu = timed(partial(client.get, path))
        assert response.status_code == 200, (path, response.status_code)
        if n >= args.warmup:
            times.append(wall)
            cpu_times.append(cpu)
    queries = query_count(lambda: timed(partial(client.get, path_of(images[0]))))
    return percentiles(times, cpu_times, queries)


def measure_throughput(world, args):
    """Job creations per second from `--threads` clients posting at once."""
    from django.db import connection

    share, extra = divmod(args.requests, args.threads)
    errors = []
    barrier = threading.Barrier(args.threads + 1)

    def post_jobs(count):
        try:
            client = client_for(world)
            barrier.wait()
            for _ in range(count):
                job_id = job_create_call(client, world)[2]
                mark_finished(job_id)
        except Exception as error:  # reported below: a failed thread must not hang the run
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=post_jobs, args=(share + (n < extra),))
               for n in range(args.threads)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return {"per_second": args.requests / elapsed, "seconds": elapsed}


# -- Report ---------------------------------------------------------------------------



def section(results, throughput, info, args):
    created = results[0][2]
    verdict = "meets" if created["p50"] < TARGET_P50_MS else "misses"
    lines = [
        "## HTTP API overhead on top of the job, PostgreSQL",
        "",
        f"Command: `{args.command}` (`python -m bench.api`)  ",
        f"Machine: {info['cpu']}, {info['cores']} cores; PostgreSQL {info['postgres']} on the "
        f"same machine; Python {info['python']}, Django {info['django']}; {info['date']}; "
        f"load average {info['load']:.1f} at the start, {info['load_after']:.1f} at the end",
        "",
        "A throwaway database: one team, an editor with a personal access token, a project, "
        f"a model, {QUEUED_AHEAD} other members' jobs waiting in line and {FINISHED_JOBS} "
        "finished jobs with a real 64x64 PNG each. Each call goes through Django's test "
        "client with `Authorization: Bearer` against the real views, middleware, token "
        "check, generate form, services and quota checks (DEBUG off; rate limits and "
        "quotas set out of reach so that they are checked but never refuse): the server's "
        "time from request to finished response, without network. Job creation includes "
        "committing the job and announcing it on the channel layer (in-memory); the "
        "broker's send is stubbed, and each new job is marked finished after its call "
        f"(untimed) so the queue keeps its length. {args.warmup} untimed calls first.",
        "",
        "| call | what | calls | p50 (ms) | p95 (ms) | max (ms) | CPU p50 (ms) | queries |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, what, numbers in results:
        lines.append(f"| {name} | {what} | {numbers['calls']} | {numbers['p50']:.1f} | "
                     f"{numbers['p95']:.1f} | {numbers['max']:.1f} | {numbers['cpu']:.1f} | "
                     f"{numbers['queries']} |")
    lines += [
        "",
        f"Of a job creation, the studio's generate form and job services (what the "
        "browser's generate request runs too: the prompt policy, model and quota checks, the "
        "job's insert and its announcement) take "
        f"{created['form_and_services']:.1f} ms p50; the API's own part (token, "
        "permissions, JSON in and out, the answer built from the jobs saved, not read "
        f"back) {created['own']:.1f} ms p50.",
        "",
        f"Job creation on PostgreSQL: **{throughput['per_second']:.0f} jobs/s** from "
        f"{args.threads} concurrent clients ({args.requests} calls in "
        f"{throughput['seconds']:.1f} s, one process, each client its own connection; each "
        "call also marks its job finished).",
        "",
        f"Target: request → job queued under {TARGET_P50_MS} ms p50: this run {verdict} it "
        f"({created['p50']:.1f} ms wall-clock, {created['cpu']:.1f} ms of CPU). The machine "
        "is shared with other work (see the load average), which inflates and scatters the "
        "wall-clock times; the CPU column (this process's CPU time per call, the in-memory "
        "channel layer's publishing thread included) is steadier.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    create_database(args.postgres, DATABASE)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-api-media-") as media:
            # Limits out of reach: checked on every call, never refusing.
            setup_django(args.postgres, DATABASE, media,
                         STUDIO_GENERATE_POSTS_PER_MINUTE=HIGH_LIMIT,
                         STUDIO_USER_MAX_ACTIVE_IMAGES=HIGH_LIMIT,
                         STUDIO_USER_IMAGES_PER_HOUR=HIGH_LIMIT)
            from django.db import connections

            # The broker's send is Celery's time, not the API's (and no worker runs here).
            stub_broker = mock.patch("generation.services.enqueue_generation")
            stub_broker.start()
            world = fill()
            info = machine()
            results = [
                ("request → job queued", "`POST /api/v1/projects/{id}/jobs`, one 512x512 job",
                 measure_create(world, args)),
                ("finished job → response", "`GET /api/v1/jobs/{id}` with its image ids",
                 measure_get(world, args, lambda image: f"/api/v1/jobs/{image.job_id}")),
                ("finished job → image metadata", "`GET /api/v1/images/{id}` with lineage",
                 measure_get(world, args, lambda image: f"/api/v1/images/{image.pk}")),
                ("finished job → image file", "`GET /api/v1/images/{id}/file`, the PNG",
                 measure_get(world, args, lambda image: f"/api/v1/images/{image.pk}/file")),
            ]
            for name, _, numbers in results:
                print(f"{name:32} p50 {numbers['p50']:6.1f} ms  p95 {numbers['p95']:6.1f} ms  "
                      f"CPU {numbers['cpu']:6.1f} ms  {numbers['queries']} queries",
                      file=sys.stderr)
            throughput = measure_throughput(world, args)
            print(f"job creations: {throughput['per_second']:.0f}/s", file=sys.stderr)
            info["load_after"] = os.getloadavg()[0]
            markdown = section(results, throughput, info, args)
            connections.close_all()
    finally:
        drop_database(args.postgres, DATABASE)
    print(markdown)
    if args.write:
        write_section(args.write, SECTION, markdown)


if __name__ == "__main__":
    main()
