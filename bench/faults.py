"""Recovery and scaling of the distributed mode on one machine, with real processes on a
throwaway PostgreSQL and Redis (tests/faults/services.py), into docs/BENCHMARKS.md:

- takeover: a GPU worker is killed (SIGKILL) in the middle of a job; the time until the job
  runs again (its lease lapses, the sweeper releases it, a worker claims it). Target: the
  lease plus a few seconds.
- throughput: the same jobs with 1, 2 and 4 GPU worker processes, in images per second.

    python -m bench.faults --write docs/BENCHMARKS.md      (make bench-faults)
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SECTION = "faults"
# Long enough to be killed in the middle on any machine: the job is canceled once it runs
# again, so its length costs nothing.
TAKEOVER_STEPS = 1000
COMMAND = "make bench-faults"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the section into this markdown file")
    parser.add_argument("--kills", type=int, default=3, help="worker kills to time")
    parser.add_argument("--lease", type=float, default=5.0, help="STUDIO_JOB_LEASE_S")
    parser.add_argument("--sweep", type=float, default=2.0, help="STUDIO_SWEEP_INTERVAL_S")
    parser.add_argument("--jobs", type=int, default=24, help="jobs per throughput run")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    return parser.parse_args(argv)


def setup_django(database_url, redis_url, media_root):
    """This process as a web node of the throwaway services (before Django is set up)."""
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url,
        "REDIS_URL": redis_url, "MEDIA_ROOT": str(media_root),
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def fresh_workers(celery, count):
    """`count` GPU workers, a CPU worker and beat, each ready to take messages."""
    from tests.faults.services import wait_until

    names = [f"gpu{n}" for n in range(1, count + 1)]
    for name in names:
        celery.start_gpu_worker(name)
    celery.start_cpu_worker()
    celery.start_beat()
    for name in [*names, "cpu"]:
        wait_until(lambda name=name: " ready." in celery.log_text(name), 600, f"{name} ready")
    return names


def measure_takeovers(*, pairs, model_dir, celery, args):
    """Seconds from each kill to the job running again."""
    fresh_workers(celery, 2)
    takeovers = [takeover_once(pairs=pairs, model_dir=model_dir, celery=celery, args=args)
                 for _ in range(args.kills)]
    celery.stop_all()
    return takeovers


def takeover_once(*, pairs, model_dir, celery, args):
    """One job, long enough to be killed in the middle; its worker killed once it has run
    a few steps, then started again. Once the job runs again it is canceled: the time to
    run all its steps again says nothing about recovery."""
    from generation.models import GenerationJob, JobStatus
    from generation.services import job_cancel
    from tests.faults.services import wait_until
    from tests.faults.workload import FINAL, jobs_submit, worker_pid

    user = pairs[0][0]
    [job_id] = jobs_submit(pairs=pairs[:1], model_dir=model_dir, jobs=1, steps=TAKEOVER_STEPS,
                           size=args.size)
    this_job = GenerationJob.objects.filter(pk=job_id)
    job = wait_until(lambda: this_job.filter(progress_step__gte=3).first(), 600, "the job to run")
    victim = celery.name_of(worker_pid(job))
    celery.kill(victim)
    killed_at = time.monotonic()
    wait_until(
        lambda: this_job.filter(status=JobStatus.RUNNING, claims__gt=job.claims).exists(),
        600, "the job to run again", interval=0.05,
    )
    running_again = time.monotonic() - killed_at
    job_cancel(job=this_job.get(), user=user)
    celery.start_gpu_worker(victim)
    wait_until(lambda: this_job.filter(status__in=FINAL).exists(), 600, "the job to end")
    wait_until(lambda: " ready." in celery.log_text(victim).rsplit("----- start", 1)[1],
               600, f"{victim} ready again")
    return running_again


def measure_throughput(*, pairs, model_dir, celery, workers, args):
    """Images per second for `args.jobs` jobs on `workers` GPU worker processes."""
    from tests.faults.workload import jobs_submit, wait_for_final

    fresh_workers(celery, workers)
    started = time.monotonic()
    job_ids = jobs_submit(pairs=pairs, model_dir=model_dir, jobs=args.jobs, steps=args.steps,
                          size=args.size)
    wait_for_final(job_ids, 1800)
    seconds = time.monotonic() - started
    from gallery.models import Image

    images = Image.objects.filter(job__in=job_ids).count()
    celery.stop_all()
    return {"workers": workers, "images": images, "seconds": seconds}


def section(*, args, machine, takeovers, throughput):
    from gpu_workers.bench.report import machine_line

    lines = [
        "## Fault recovery and worker scaling (distributed mode, one machine)",
        "",
        f"Command: `{COMMAND}`  ",
        f"Machine: {machine_line(machine)}",
        "",
        "Real `celery -A studio worker` processes (GPU queue: threads pool, the engine's "
        "batching; a CPU worker; beat running the sweeper) on a throwaway PostgreSQL and "
        "Redis, the tiny SD1.5-architecture model on the CPU, loaded by each worker before it "
        f"takes jobs. Lease {args.lease:g} s "
        f"(`STUDIO_JOB_LEASE_S`), sweep every {args.sweep:g} s (`STUDIO_SWEEP_INTERVAL_S`).",
        "",
        f"### Worker killed mid-job ({len(takeovers)} kills)",
        "",
        f"A job at {args.size}x{args.size} has run a few steps on one of two GPU workers; that "
        "worker gets SIGKILL. Measured: the time until the job is claimed again (by the other "
        "worker, or the killed one started again), polled every 50 ms.",
        "",
        "| Kill | Running again (s) |",
        "|---:|---:|",
        *(f"| {n} | {seconds:.1f} |" for n, seconds in enumerate(takeovers, start=1)),
        "",
        f"Median kill → running again: {statistics.median(takeovers):.1f} s "
        f"(target: the lease, {args.lease:g} s, plus a few seconds).",
        "",
        f"### Throughput by GPU worker processes ({args.jobs} jobs, {args.size}x{args.size}, "
        f"{args.steps} steps, a third of them 2 images)",
        "",
        "| GPU workers | Images | Seconds | Images/s |",
        "|---:|---:|---:|---:|",
        *(f"| {r['workers']} | {r['images']} | {r['seconds']:.1f} | "
          f"{r['images'] / r['seconds']:.2f} |" for r in throughput),
        "",
        f"On {machine['cores']} CPU cores every worker process shares the same cores, so more "
        "processes add no compute: the engine already batches jobs within one process. On "
        "GPU hosts, run one GPU worker process per device.",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    from tests.faults.services import CeleryProcesses, PostgresServer, RedisServer

    postgres, redis, runs = PostgresServer(), RedisServer(), []
    scratch = Path(tempfile.mkdtemp(prefix="studio-bench-faults-"))
    try:
        postgres.start()
        postgres.create_database("studio")
        redis.start()
        media_root = scratch / "media"
        setup_django(postgres.url(), redis.url(), media_root)
        from gpu_workers.bench.measure import machine_info
        from gpu_workers.tiny_models import build_tiny_sd15
        from tests.faults.workload import users_with_projects

        machine = machine_info("cpu")
        model_dir = build_tiny_sd15(scratch / "tiny-sd15")
        pairs = users_with_projects(3)

        def celery(run):
            runs.append(CeleryProcesses(
                database_url=postgres.url(), redis_url=redis.url(), media_root=media_root,
                logs=scratch / "logs" / run,
                env={"STUDIO_JOB_LEASE_S": str(args.lease),
                     "STUDIO_SWEEP_INTERVAL_S": str(args.sweep)},
                # GPU workers load the model before they say they're ready, so the timings
                # count generation, not start-up.
                gpu_env={"STUDIO_PRELOAD_MODELS": str(model_dir)},
            ))
            return runs[-1]

        takeovers = measure_takeovers(pairs=pairs, model_dir=model_dir,
                                      celery=celery("takeover"), args=args)
        print("kill -> running again (s):", takeovers, file=sys.stderr)
        throughput = []
        for workers in args.workers:
            throughput.append(measure_throughput(
                pairs=pairs, model_dir=model_dir, celery=celery(f"workers-{workers}"),
                workers=workers, args=args,
            ))
            print(throughput[-1], file=sys.stderr)
        machine["load_average_after"] = os.getloadavg()[0]
        markdown = section(args=args, machine=machine, takeovers=takeovers,
                           throughput=throughput)
        print(markdown)
        if args.write:
            from gpu_workers.bench.report import write_section

            write_section(args.write, SECTION, markdown)
    finally:
        for processes in runs:
            processes.stop_all()
        postgres.destroy()
        redis.destroy()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
