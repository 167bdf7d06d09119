"""Gallery pages on PostgreSQL with 10,000 images: server time, queries and query plans.

    python -m bench.gallery --write docs/BENCHMARKS.md        (make bench-gallery)

Creates a throwaway database (`studio_bench_gallery`) on the PostgreSQL server at
`--postgres` (default postgres://postgres@127.0.0.1:5432, trust auth), migrates it,
bulk-inserts 10,000 images (5 teams, 15 projects, 30 users, 4 models, a job per 4 images;
no files: grids only build thumbnail URLs), then times each page through Django's test
client against the real views, middleware and templates: the time from request to
finished response in this process, DEBUG off. The query plans of every page's queries are
checked with EXPLAIN ANALYZE for sequential scans of the image table. The database is
dropped at the end, also on failure.
"""

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.database import create_database, drop_database, machine, setup_django

DATABASE = "studio_bench_gallery"
SECTION = "gallery-postgres"
SQL_SAMPLES = 5

SUBJECTS = [
    "lighthouse", "red fox", "city street", "portrait of an old sailor", "pine forest",
    "castle on a hill", "robot", "cat", "mountain lake", "sailing ship", "desert", "owl",
]
STYLES = [
    "oil painting", "watercolor", "35mm photo", "studio lighting", "isometric render",
    "ink sketch", "cinematic", "pastel colours",
]
TIMES = ["at dusk", "at dawn", "in the rain", "at night", "in winter", "in fog"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432"),
        help="server URL without a database name (a database of its own is made there)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per page first")
    parser.add_argument("--write", type=Path, help="write the section into this markdown file")
    parser.add_argument("--command", default="make bench-gallery",
                        help="the command named in the section")
    parser.add_argument("--keep", action="store_true",
                        help=f"leave the database ({DATABASE}) for a look by hand")
    parser.add_argument("--show-plans", action="store_true",
                        help="print the SQL and plan of queries that scan the image table")
    parser.add_argument("--only", metavar="TEXT",
                        help="measure only the pages whose name contains TEXT (no report)")
    parser.add_argument("--profile", type=Path, metavar="FOLDER",
                        help="profile each page's timed requests with pyinstrument into "
                        "FOLDER/<page>.txt (slows the timings: compare them only with "
                        "other profiled runs)")
    return parser.parse_args(argv)


# -- Data -----------------------------------------------------------------------------


def fill(total, rng):
    """Teams, projects, users, models, jobs and `total` images; the benchmark's viewpoint."""
    from django.db import connection

    from gallery.models import Image, ModerationStatus, ReviewStatus, Visibility
    from generation.models import DiffusionModel, GenerationJob, JobMode, JobStatus
    from studio.accounts.models import Membership, Project, Role, Team, User

    users = User.objects.bulk_create(
        User(username=f"user{n}", email=f"user{n}@example.org") for n in range(30)
    )
    teams = Team.objects.bulk_create(Team(name=f"Team {n}") for n in range(5))
    Membership.objects.bulk_create(
        Membership(team=teams[n % 5], user=user, role=Role.EDITOR if n % 3 else Role.VIEWER)
        for n, user in enumerate(users)
    )
    projects = Project.objects.bulk_create(
        Project(team=team, name=f"{team.name} project {n}") for team in teams for n in range(3)
    )
    models = DiffusionModel.objects.bulk_create(
        DiffusionModel(name=f"model-{n}", source=f"/models/{n}") for n in range(4)
    )
    # The big project: 40% of all images; the rest of its team's 20%; other teams share 40%.
    big, team_rest, others = projects[0], projects[1:3], projects[3:]
    weights = [0.4] + [0.1] * 2 + [0.4 / len(others)] * len(others)
    now = datetime.now(UTC)
    members = {team.pk: [u for n, u in enumerate(users) if n % 5 == i]
               for i, team in enumerate(teams)}
    jobs, plan = [], []
    for _ in range(total // 4):
        project = rng.choices([big, *team_rest, *others], weights)[0]
        prompt = (f"a {rng.choice(SUBJECTS)} {rng.choice(TIMES)}, {rng.choice(STYLES)}, "
                  f"detailed, {rng.randint(1, 9999)}")
        created = now - timedelta(seconds=rng.randint(0, 180 * 86_400))
        jobs.append(GenerationJob(
            project=project, created_by=rng.choice(members[project.team_id]),
            model=rng.choice(models), prompt=prompt, steps=25, guidance_scale=7.0,
            width=512, height=512, seed=rng.randint(0, 2**31), batch_size=4,
            mode=JobMode.TXT2IMG if rng.random() < 0.8 else JobMode.IMG2IMG,
            status=JobStatus.FINISHED, created_at=created,
        ))
        plan.append(created)
    jobs = GenerationJob.objects.bulk_create(jobs, batch_size=1000)
    images = []
    for job, created in zip(jobs, plan, strict=True):
        for n in range(4):
            name = secrets.token_hex(16)
            public = rng.random() < 0.1
            images.append(Image(
                project_id=job.project_id, team_id=job.project.team_id, job=job,
                created_by_id=job.created_by_id,
                file=f"images/{job.project_id}/{name}.png", width=512, height=512,
                prompt=job.prompt, seed=job.seed + n, parameters=f"{job.prompt}\nSteps: 25",
                thumbnails={"256": f"thumbnails/{name}-256.webp",
                            "512": f"thumbnails/{name}-512.webp"},
                visibility=Visibility.PUBLIC if public else Visibility.PROJECT,
                moderation_status=ModerationStatus.PASSED if public
                else ModerationStatus.PENDING,
                review_status=rng.choice(ReviewStatus.values),
                created_at=created + timedelta(milliseconds=n),
                # 1% deleted, inside the undo window: every page must leave them out.
                deleted_at=now if rng.random() < 0.01 else None,
            ))
    Image.all_objects.bulk_create(images, batch_size=1000)
    # Likes: up to 30,000 over the images, skewed (a few popular ones, many with one or
    # none), so that "most liked" orders real counts.
    from gallery.models import Like

    image_ids = list(Image.objects.values_list("pk", flat=True))
    liked = {(rng.choice(users).pk, int(len(image_ids) * rng.random() ** 3))
             for _ in range(30_000)}
    Like.objects.bulk_create(
        (Like(user_id=user_id, image_id=image_ids[n]) for user_id, n in liked),
        batch_size=2000, ignore_conflicts=True,
    )
    # Lineage: some img2img jobs take an image of their project as their source.
    sources = list(Image.objects.filter(project=big).values_list("pk", flat=True)[:300])
    for job in GenerationJob.objects.filter(project=big, mode=JobMode.IMG2IMG)[:300]:
        job.source_image_id = rng.choice(sources)
        job.save(update_fields=["source_image"])
    # A live queue: the studio's job list shows queued jobs with their place in it.
    for job in GenerationJob.objects.filter(project=big).order_by("-created_at")[:6]:
        job.status = JobStatus.QUEUED if job.pk % 2 else JobStatus.RUNNING
        job.save(update_fields=["status"])
    with connection.cursor() as cursor:
        # As autovacuum leaves a settled table: statistics, and the visibility map that
        # lets counts read an index alone.
        cursor.execute("VACUUM ANALYZE")
    viewer = users[0]  # an editor of team 0, which holds the big project
    assert Membership.objects.get(user=viewer).team_id == big.team_id
    return {"viewer": viewer, "big": big, "team": big.team, "models": models}


# -- Pages ----------------------------------------------------------------------------


def pages(world):
    """(name, what it is, url, params, headers) of every page measured."""
    from django.urls import NoReverseMatch, reverse

    from gallery.browse import encode_cursor
    from gallery.models import Image

    big, team = world["big"], world["team"]
    project_url = reverse("project_gallery", args=[big.pk])
    team_url = reverse("team_gallery", args=[team.pk])
    newest_first = Image.objects.filter(project=big).order_by("-created_at", "-pk")
    depth = min(3000, newest_first.count() * 3 // 4)  # 3,000 of the full run's ~4,000
    deep = newest_first[depth]
    htmx = {"HTTP_HX_REQUEST": "true"}
    detail_ids = list(
        Image.objects.filter(project=big, job__source_image__isnull=False)
        .values_list("pk", flat=True)[:50]
    )
    cases = [
        ("project grid", "first page (40 images) with the filters and total", project_url,
         {}, {}),
        ("project grid, deep", f"the page after {depth:,} images, as infinite scroll asks "
         "(HTMX)", project_url, {"cursor": encode_cursor(deep)}, htmx),
        ("project grid, search", "prompt search `lighthouse dusk` (HTMX results)",
         project_url, {"q": "lighthouse dusk"}, htmx),
        ("project grid, filtered", "model + approved + date range (HTMX results)",
         project_url, {"model": world["models"][1].pk, "review": "approved",
                       "date_from": (datetime.now(UTC) - timedelta(days=90)).date()}, htmx),
        ("project grid, most liked", "first page ordered by likes (HTMX results)",
         project_url, {"sort": "liked"}, htmx),
        ("team grid", "first page across the team's 3 projects", team_url, {}, {}),
        ("team grid, search", "prompt search `fox` + model (HTMX results)", team_url,
         {"q": "fox", "model": world["models"][0].pk}, htmx),
        ("my images", "the viewer's own images in every team", reverse("my_images"), {}, {}),
        ("image page", "detail with lineage, review, comments (50 different images)",
         [reverse("image_detail", args=[pk]) for pk in detail_ids], {}, {}),
    ]
    studio_url = reverse("project_studio", args=[big.pk])
    history_url = reverse("project_prompt_history", args=[big.pk])
    cases += [
        ("studio", "the project's studio page (form, queue, latest images)", studio_url,
         {}, {}),
        ("studio job list", "the queue fragment the studio re-requests (HTMX)",
         reverse("project_jobs", args=[big.pk]), {}, htmx),
        ("project history", "everyone's prompts in the project", history_url,
         {"who": "everyone"}, {}),
        ("project history, search", "prompt search `fox` (HTMX results)", history_url,
         {"who": "everyone", "q": "fox"}, htmx),
    ]
    try:
        cases.append(("explore", "public, moderation-passed images", reverse("explore"),
                      {}, {}))
        cases.append(("explore, most liked", "the same, ordered by likes (HTMX results)",
                      reverse("explore"), {"sort": "liked"}, htmx))
    except NoReverseMatch:
        pass
    return cases


def measure(client, case, requests, warmup, profile=None):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    name, _, urls, params, headers = case
    urls = urls if isinstance(urls, list) else [urls]
    for n in range(warmup):
        assert client.get(urls[n % len(urls)], params, **headers).status_code == 200, name
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    times, cpu_times = [], []
    for n in range(requests):
        start, cpu_start = time.perf_counter(), time.process_time()
        response = client.get(urls[n % len(urls)], params, **headers)
        times.append((time.perf_counter() - start) * 1000)
        # This process's CPU time: Python and templates, without the database's share or
        # the waits for a core that other work on a loaded machine causes.
        cpu_times.append((time.process_time() - cpu_start) * 1000)
        assert response.status_code == 200, (name, response.status_code)
    if profile:
        profiler.stop()
        profile.mkdir(parents=True, exist_ok=True)
        slug = "".join(c if c.isalnum() else "-" for c in name)
        (profile / f"{slug}.txt").write_text(profiler.output_text(show_all=False))
    # The database's share, from the query log of a few more requests (DEBUG is off).
    sql_times = []
    for n in range(SQL_SAMPLES):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(urls[n % len(urls)], params, **headers)
        sql_times.append(sum(float(query["time"]) for query in queries.captured_queries))
    times.sort()
    sql_ms = statistics.median(sql_times) * 1000
    return {
        "sql_ms": sql_ms,
        "p50": statistics.median(times),
        "cpu": statistics.median(cpu_times),
        "p95": times[max(0, round(0.95 * len(times)) - 1)],
        "max": times[-1],
        "queries": len(queries),
        "bytes": len(response.content),
        "sql": [query["sql"] for query in queries.captured_queries],
    }


def plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def image_scans(sqls, show=False):
    """How each SELECT touching gallery_image reads that table, from EXPLAIN ANALYZE."""
    from django.db import connection

    scans = []
    with connection.cursor() as cursor:
        for sql in sqls:
            if not sql.lstrip().upper().startswith("SELECT") or "gallery_image" not in sql:
                continue
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            raw = cursor.fetchone()[0]
            plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
            nodes = [
                (node["Node Type"], node.get("Index Name"),
                 node.get("Actual Rows", 0) * node.get("Actual Loops", 1))
                for node in plan_nodes(plan)
                if node.get("Relation Name") == "gallery_image"
                or node.get("Index Name", "").startswith(("image_", "gallery_image"))
            ]
            if show and any(kind == "Seq Scan" for kind, _, _ in nodes):
                cursor.execute("EXPLAIN ANALYZE " + sql)
                plan_text = "\n".join(row[0] for row in cursor.fetchall())
                print(f"\n{sql}\n{plan_text}\n", file=sys.stderr)
            scans.extend(nodes)
    return scans


def scan_summary(scans):
    seq = [rows for kind, _, rows in scans if kind == "Seq Scan"]
    indexes = sorted({index for _, index, _ in scans if index})
    text = ", ".join(f"`{index}`" for index in indexes) or "none"
    if seq:
        text += f"; **seq scan** ({', '.join(str(rows) for rows in seq)} rows)"
    return text


# -- Report ---------------------------------------------------------------------------



def section(results, info, args, counts, explore):
    lines = [
        f"## Gallery pages on PostgreSQL, {counts['images']:,} images",
        "",
        f"Command: `{args.command}` (`python -m bench.gallery`)  ",
        f"Machine: {info['cpu']}, {info['cores']} cores; PostgreSQL {info['postgres']} on the "
        f"same machine; Python {info['python']}, Django {info['django']}; {info['date']}; "
        f"load average {info['load']:.1f} at the start, {info['load_after']:.1f} at the end",
        "",
        f"A throwaway database with {counts['images']:,} images ({counts['big']:,} in the "
        f"largest project, {counts['team']:,} in its team, 1% deleted, 10% public), "
        f"{counts['jobs']:,} jobs, 15 projects in 5 teams, 30 users. Each page: "
        f"{args.warmup} untimed requests, then {args.requests} timed ones through Django's "
        "test client against the real views, middleware and templates (DEBUG off), by an "
        "editor of the largest project's team: the server's time from request to finished "
        "response, without network or browser. Index use: what EXPLAIN ANALYZE shows for "
        "each query of the page that reads the image table.",
        "",
        "| page | what | p50 (ms) | p95 (ms) | max (ms) | Python CPU p50 (ms) | queries (SQL ms) "
        "| indexes on images |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, what, numbers in results:
        lines.append(
            f"| {name} | {what} | {numbers['p50']:.1f} | {numbers['p95']:.1f} | "
            f"{numbers['max']:.1f} | {numbers['cpu']:.1f} | "
            f"{numbers['queries']} ({numbers['sql_ms']:.1f}) | "
            f"{numbers['scans']} |"
        )
    lines.append("")
    seq = [(name, n["scans"]) for name, _, n in results if "seq scan" in n["scans"]]
    lines += [
        "The machine is shared with other work (see the load average), which inflates and "
        "scatters the times; the Python CPU column (the server process's own CPU time per "
        "request, without waits for a core) and the SQL column (the database's time per "
        f"request, median of {SQL_SAMPLES} more) are steadier. Indexes: the project grids walk "
        "`image_project_newest` (project, newest first), the team grids "
        "`image_team_live_newest` (the image's own team column, live images newest first; "
        "migration `gallery/0010_image_team`), which also serves their counts from the "
        "index alone; a prompt search is a condition on the rows, so the prompt indexes "
        "combine with the page's others. Migration "
        "`gallery/0007_gallery_search_explore_indexes` added the indexes this benchmark "
        "asked for: the "
        "partial index `image_public_newest` (public, passed, live images), since Explore "
        "read every image to find the public ones, and GIN indexes on the prompt "
        "(`image_prompt_english`, `image_prompt_simple`) so that a search looks the words "
        "up instead of running `to_tsvector` on each image of the project. The model "
        "filter's choices of a team or a project walk each model's jobs and probe their "
        "images by job (`gallery_image_job_id_…`): a team's images are most of the table, "
        "which PostgreSQL otherwise scanned.",
        "",
        "Python: the grids' image cards are rendered in Python "
        "(`gallery/templatetags/image_cards.py`, about 1 ms for 40 cards where the template "
        "partials took 7), and sessions are read from the cache: this process's memory here "
        "(no REDIS_URL), Redis in the distributed mode, where that is a round trip instead of "
        "the query each request made.",
        "",
    ]
    if seq:
        lines += [
            "Sequential scans of the image table that remain: "
            + "; ".join(f"{name} ({scans.split('**seq scan** ')[1].strip('()')})"
                        for name, scans in seq)
            + ". A scan that stops after a few dozen rows is the planner's choice for a "
            "semi-join that expects to meet a match at once (the model filter's choices).",
            "",
        ]
    if not explore:
        lines.append("Explore: not measured, no `explore` page existed when this ran.")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    rng = random.Random(20261127)
    create_database(args.postgres, DATABASE)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gallery-media-") as media:
            setup_django(args.postgres, DATABASE, media)
            from django.db import connections
            from django.test import Client

            from gallery.models import Image
            from generation.models import GenerationJob

            started = time.perf_counter()
            world = fill(args.images, rng)
            print(f"filled in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            info = machine()
            client = Client()
            client.force_login(world["viewer"])
            results = []
            cases = [case for case in pages(world) if (args.only or "") in case[0]]
            for case in cases:
                numbers = measure(client, case, args.requests, args.warmup, args.profile)
                scans = image_scans(numbers.pop("sql"), show=args.show_plans)
                numbers["scans"] = scan_summary(scans)
                results.append((case[0], case[1], numbers))
                print(f"{case[0]:28} p50 {numbers['p50']:7.1f} ms  p95 {numbers['p95']:7.1f} ms"
                      f"  CPU {numbers['cpu']:6.1f} ms"
                      f"  SQL {numbers['sql_ms']:5.1f} ms in {numbers['queries']:2} queries  "
                      f"{numbers['scans']}", file=sys.stderr)
            info["load_after"] = os.getloadavg()[0]
            counts = {
                "images": Image.all_objects.count(),
                "big": Image.all_objects.filter(project=world["big"]).count(),
                "team": Image.all_objects.filter(project__team=world["team"]).count(),
                "jobs": GenerationJob.objects.count(),
            }
            markdown = section(results, info, args, counts,
                               explore=any(case[0] == "explore" for case in cases))
            connections.close_all()
    finally:
        if not args.keep:
            drop_database(args.postgres, DATABASE)
    print(markdown)
    if args.write and not args.only:
        from gpu_workers.bench.report import write_section

        write_section(args.write, SECTION, markdown)


if __name__ == "__main__":
    main()
