"""A bounded load test of the web tier on loopback, in the distributed mode.

    python -m bench.load --write docs/BENCHMARKS.md        (make bench-load)

Fills a throwaway PostgreSQL database (`studio_bench_load`, as bench/gallery.py does: 10,000
images) and starts a throwaway Redis on a free port, then serves the studio with the
recommended setup (uvicorn, one worker process per core, DATABASE_POOL_SIZE=8) on
127.0.0.1 only, and runs locust headless against it: `--users` simulated users
(bench/load_users.py) for `--minutes`, no more. No Celery worker runs: submitted jobs
stay queued, so the numbers are the web tier's alone. p95 per route, errors and the load
average go into docs/BENCHMARKS.md. Everything it started is stopped and the database
dropped at the end, also on failure.
"""

import argparse
import csv
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bench import gallery as gallery_bench
from bench.database import create_database, drop_database, setup_django
from gpu_workers.bench.report import cpu_model

DATABASE = "studio_bench_load"
SECTION = "web-load"
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load test password 1"
# Users arriving per second, each logging in first: 50 in 25 s, a morning's log-in rush.
SPAWN_RATE = 2
# Before measuring: enough users for a while that each web process serves every route.
WARM_UP_USERS = 4
WARM_UP_SECONDS = 15


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
        help="server URL without a database name (a database of its own is made there)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="uvicorn worker processes (default: one per core)")
    parser.add_argument("--write", type=Path, help="write the section into this markdown file")
    return parser.parse_args(argv)


def prepare(args, media):
    """The filled database, and what the simulated users need to know of it."""
    create_database(args.postgres, DATABASE)
    setup_django(args.postgres, DATABASE, media)
    from django.contrib.auth.hashers import make_password

    from gallery.models import Image
    from studio.accounts.models import Membership, User

    world = gallery_bench.fill(args.images, random.Random(20261207))
    # One hash for every user: the load test's log-ins cost what real ones do, its set-up
    # doesn't pay 30 of them.
    User.objects.update(password=make_password(PASSWORD))
    team = world["team"]
    usernames = list(
        Membership.objects.filter(team=team).exclude(role="viewer")
        .values_list("user__username", flat=True)
    )
    images = list(Image.objects.filter(project=world["big"]).values_list("pk", flat=True)[:200])
    return {
        "usernames": usernames, "password": PASSWORD, "project": world["big"].pk,
        "team": team.pk, "images": images, "model": world["models"][0].pk,
    }


def serve(args, media, redis_url, logs):
    port = bench_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.postgres}/{DATABASE}",
        "REDIS_URL": redis_url,
        "DATABASE_POOL_SIZE": "8",
        "DJANGO_SETTINGS_MODULE": "studio.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "MEDIA_ROOT": str(media),
        "LOG_LEVEL": "WARNING",
        # Users here share a handful of accounts: per-user limits would refuse the test.
        "STUDIO_GENERATE_POSTS_PER_MINUTE": "1000",
        "STUDIO_USER_MAX_ACTIVE_IMAGES": "100000",
        "STUDIO_USER_IMAGES_PER_HOUR": "100000",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "studio.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(args.workers), "--no-access-log"],
        cwd=ROOT, env=env, stdout=logs, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/login/", timeout=5)
            return server, url
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start (see {logs.name})") from None
            time.sleep(0.5)


def bench_port():
    from tests.faults.services import free_port

    return free_port()


def run_locust(url, world, folder, *, name, users, spawn_rate, seconds):
    """Locust's stats per route (and "Aggregated") of `users` simulated users for
    `seconds`."""
    env = {**os.environ, "BENCH_LOAD_WORLD": json.dumps(world)}
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "load_users.py"),
         "--headless", "--users", str(users), "--spawn-rate", str(spawn_rate),
         "--run-time", f"{seconds}s", "--stop-timeout", "10", "--host", url,
         "--csv", str(folder / name), "--only-summary", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, check=False, timeout=seconds + 120,
    )
    with open(folder / f"{name}_stats.csv") as stats:
        return list(csv.DictReader(stats))


def warm_up(url, world, folder):
    """A few users over every route first, not measured: a fresh web process's first
    requests import and compile what every later one reuses (templates, URL patterns, the
    hasher's library), which a server in service has long done. Without errors, or the
    measured run would not be of a working server."""
    rows = run_locust(url, world, folder, name="warm_up", users=WARM_UP_USERS,
                      spawn_rate=WARM_UP_USERS, seconds=WARM_UP_SECONDS)
    failures = sum(int(row["Failure Count"]) for row in rows if row["Name"] == "Aggregated")
    if failures:
        raise RuntimeError(f"{failures} requests failed while warming up the server")


def section(rows, args, load):
    total = next(row for row in rows if row["Name"] == "Aggregated")
    lines = [
        f"## Web tier under load, {args.users} users on loopback",
        "",
        "Command: `make bench-load` (`python -m bench.load`)  ",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; load "
        f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end (this machine runs "
        "other work too)",
        "",
        f"After {WARM_UP_SECONDS} s of {WARM_UP_USERS} users warming the server up (not "
        "measured), "
        f"{args.users} locust users, {SPAWN_RATE} arriving a second (bench/load_users.py: "
        "log in (the POST alone: its Argon2 password hash is about 0.18 s of CPU by design; "
        "the dashboard it leads to is timed apart), then the studio and its "
        "job list, galleries, a team search, image pages, prompt history, Explore and now "
        f"and then a job, 1-3 s apart) for {args.minutes:g} minutes against uvicorn with "
        f"{args.workers} worker processes and DATABASE_POOL_SIZE=8, PostgreSQL with "
        f"{args.images:,} images and Redis on the same machine, no Celery worker (jobs stay "
        f"queued). {int(total['Request Count']):,} requests, "
        f"{int(total['Failure Count'])} errors.",
        "",
        f"Locust starts its {SPAWN_RATE} users of each second together, so log-ins come in "
        "pairs: two Argon2 hashes of about 0.18 s of CPU each (8 lanes, 0.11 s alone on idle "
        "cores) share the 2 cores with the pages, which puts the log-in POST's floor near "
        "0.2 s and its p95 above the other routes'. Its cost is the hasher's at Django's "
        "parameters, kept on purpose (README, Sizing the web tier).",
        "",
        "| route | requests | errors | p50 (ms) | p95 (ms) | max (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['Name'] if row['Name'] != 'Aggregated' else '**all**'} | "
            f"{row['Request Count']} | {row['Failure Count']} | {row['50%']} | "
            f"{row['95%']} | {float(row['Max Response Time']):.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    from tests.faults.services import RedisServer

    redis = RedisServer()
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
            folder = Path(folder)
            media = folder / "media"
            media.mkdir()
            world = prepare(args, media)
            from django.db import connections

            connections.close_all()
            redis.start()
            with open(folder / "web.log", "w") as logs:
                server, url = serve(args, media, redis.url(), logs)
                warm_up(url, world, folder)
                load_before = os.getloadavg()[0]
                rows = run_locust(url, world, folder, name="load", users=args.users,
                                  spawn_rate=SPAWN_RATE, seconds=int(args.minutes * 60))
                load = (load_before, os.getloadavg()[0])
            if any(int(row["Failure Count"]) for row in rows):
                print((folder / "web.log").read_text()[-4000:], file=sys.stderr)
                failures = folder / "load_failures.csv"
                if failures.exists():
                    print(failures.read_text()[:4000], file=sys.stderr)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        redis.destroy()
        drop_database(args.postgres, DATABASE)
    markdown = section(rows, args, load)
    print(markdown)
    if args.write:
        from gpu_workers.bench.report import write_section

        write_section(args.write, SECTION, markdown)


if __name__ == "__main__":
    main()
