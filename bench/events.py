"""Event latency from a worker's publish to a logged-in browser's project socket.

Starts the real ASGI app (`studio.asgi`) with daphne on a free port and the configured
channel layer, creates a throwaway project member, logs them in through the login form,
connects a websocket client to ws/projects/<id>/ and times
`studio.realtime.events.publish(group, payload)` → receipt by the client.

Then a GPU worker's progress report of N jobs of the project (REPORT_JOBS), each job's
`job.progress` event with a preview, published both ways: one `events.publish` per job in
a row (as workers did, a wait for each), and one `events.publish_all` (as
generation/progress.py does). Timed from the start of publishing until the client has
received all N, and the publisher's own time; every report checked complete and in order.

- Redis layer (REDIS_URL set): daphne runs in a subprocess, as a web node does, and this
  process publishes through Redis, as a GPU worker does.
- In-memory layer: it delivers only inside one process, so daphne runs in this process
  and the publisher in a thread beside it, which is how the embedded mode runs its worker.

The websocket client is a thread of this process in both cases. Starting the app in the
embedded mode resumes unfinished jobs like any server start: give the benchmark a database
of its own (`make bench` does).

    python -m bench.events --json var/bench/events.json      (make bench, after migrating)

It sets Django up itself: DJANGO_SETTINGS_MODULE (studio.settings unless set) and the
environment choose the database and the channel layer.
"""

import argparse
import base64
import io
import json
import math
import os
import queue
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

from django.conf import settings
from django.db import connection
from PIL import Image

from studio.realtime import events
from studio.realtime.event_types import EventType

WARMUP_EVENTS = 10  # the first ones open connections and bind loops
PREVIEW_EVERY = 4  # the engine sends about 4 previews per second, steps come faster
RECEIVE_TIMEOUT_S = 10
CLOSE_GRACE_S = 0.5
REPORT_JOBS = (8, 32)  # jobs in one progress report: a batch, and the engine's largest
REPORT_PAUSE_S = 0.02  # between two reports, so each starts on a quiet server
# How a report's events are published: the keys of the JSON's "reports" runs.
REPORT_WAYS = ("publish", "publish_all")


class BenchmarkError(Exception):
    """A run that measured nothing: said in one line, without a traceback."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Measure event latency from studio.realtime.events.publish to a "
        "logged-in browser's project websocket, on the configured channel layer."
    )
    parser.add_argument("--events", type=int, default=300, help="events to time")
    parser.add_argument(
        "--interval-ms", type=float, default=5, help="pause between two publishes"
    )
    parser.add_argument(
        "--reports",
        type=int,
        default=200,
        help="progress reports to time for each number of jobs and way of publishing",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1.")
    if args.reports < 1:
        parser.error("--reports must be at least 1.")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        import websockets.sync.client  # noqa: F401  (the `test` extra installs it)
    except ImportError:
        sys.exit("bench.events needs `pip install websockets`.")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    import django

    django.setup()
    try:
        results = measure(
            events_count=args.events, interval_ms=args.interval_ms, reports=args.reports
        )
    except BenchmarkError as error:
        sys.exit(f"bench.events: {error}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"Channel layer: {results['layer']}")
    for name, numbers in results["payloads"].items():
        print(
            f"{name}: {numbers['received']}/{numbers['sent']} received, "
            f"p50 {numbers['p50_ms']:.2f} ms, p95 {numbers['p95_ms']:.2f} ms, "
            f"max {numbers['max_ms']:.2f} ms"
        )
    for run in results["reports"]["runs"]:
        print(
            f"report of {run['jobs']} jobs, {run['way']}: {run['complete_in_order']}/"
            f"{run['reports']} complete and in order, all received p50 "
            f"{run['received_p50_ms']:.2f} ms, p95 {run['received_p95_ms']:.2f} ms; "
            f"publisher p50 {run['publisher_p50_ms']:.2f} ms, "
            f"p95 {run['publisher_p95_ms']:.2f} ms"
        )


def measure(*, events_count, interval_ms, reports):
    """Time `events_count` publishes to a throwaway member's socket, then `reports`
    progress reports of each size both ways, then delete the member."""
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    password = secrets.token_urlsafe(12)
    user, team, project = _throwaway_member(password)
    port = _free_port()
    client = _Browser(
        port=port,
        user_id=user.pk,
        username=user.username,
        password=password,
        project=project,
        count=events_count,
        interval_s=interval_ms / 1000,
        reports=reports,
    )
    try:
        if layer.endswith("InMemoryChannelLayer"):
            mode = (
                "It delivers only within a process, so daphne, the publisher (a thread, "
                "as the embedded worker is) and the websocket client share one."
            )
            measured = _measure_in_process(client, port)
        else:
            mode = (
                "daphne in its own process, as a web node; the publisher, as a worker, "
                "and the websocket client in another; events go through the layer's "
                "server (Redis)."
            )
            measured = _measure_with_server_process(client, port)
    finally:
        team.delete()
        user.delete()
    return {
        "layer": layer,
        "mode": mode,
        "database": connection.vendor,
        "sent": events_count,
        "interval_ms": interval_ms,
        **measured,
    }


def _throwaway_member(password):
    from studio.accounts.models import Membership, Project, Role, Team, User

    user = User.objects.create_user(f"bench-events-{secrets.token_hex(4)}", password=password)
    team = Team.objects.create(name="Event latency benchmark")
    Membership.objects.create(team=team, user=user, role=Role.VIEWER)
    project = Project.objects.create(team=team, name="Event latency benchmark", created_by=user)
    return user, team, project


def _measure_in_process(client, port):
    # daphne.server installs Twisted's asyncio reactor; Django imported it already (the
    # daphne app), before anything else could install another.
    from daphne.server import Server
    from twisted.internet import reactor

    from studio.asgi import application

    server = Server(
        application,
        endpoints=[f"tcp:port={port}:interface=127.0.0.1"],
        signal_handlers=False,  # the reactor stops when the measuring thread is done
    )
    outcome = {}
    server_stopped = threading.Event()

    def measure():
        try:
            _wait_for_http(client.base_url + "/login/", alive=lambda: not server_stopped.is_set())
            outcome["measured"] = client.measure()
        except BaseException as error:
            outcome["error"] = error
        finally:
            reactor.callFromThread(server.stop)

    thread = threading.Thread(target=measure, name="bench-events", daemon=True)
    thread.start()
    server.run()  # returns once stopped: by the measuring thread, or failing to listen
    server_stopped.set()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["measured"]


def _measure_with_server_process(client, port):
    with tempfile.TemporaryFile("w+") as log:
        # Same environment, so the same settings, database and Redis.
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "studio.asgi:application",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            try:
                _wait_for_http(client.base_url + "/login/", alive=lambda: server.poll() is None)
            except RuntimeError as error:
                log.seek(0)
                raise BenchmarkError(f"{error}. daphne's output:\n{log.read()}") from error
            return client.measure()
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


class _Browser:
    """A logged-in browser tab on the project page, and the worker that publishes to it."""

    def __init__(
        self, *, port, user_id, username, password, project, count, interval_s, reports
    ):
        self.base_url = f"http://127.0.0.1:{port}"
        self.socket_url = f"ws://127.0.0.1:{port}/ws/projects/{project.pk}/"
        self.username = username
        self.user_id = user_id
        self.password = password
        self.group = project.events_group()
        self.count = count
        self.interval_s = interval_s
        self.reports = reports

    def measure(self):
        """{"payloads": latency of single events, "reports": progress reports' times}."""
        from websockets.sync.client import connect

        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={self._log_in()}"}
        slots_before = self._socket_slots()
        with connect(
            self.socket_url, origin=self.base_url, additional_headers=headers, proxy=None
        ) as socket_:
            slots_taken = self._socket_slots() - slots_before
            for seq in range(WARMUP_EVENTS):
                events.publish(self.group, _payload(seq, with_preview=False))
                socket_.recv(timeout=RECEIVE_TIMEOUT_S)

            latencies = {}  # seq → seconds
            receiver = threading.Thread(
                target=self._receive, args=(socket_, latencies), name="bench-browser"
            )
            receiver.start()
            for seq in range(self.count):
                events.publish(self.group, _payload(seq, with_preview=seq % PREVIEW_EVERY == 0))
                time.sleep(self.interval_s)
            receiver.join()
            reports = self._measure_reports(socket_)
        self._wait_for_the_socket_to_leave(slots_taken)
        return {"payloads": self._payload_numbers(latencies), "reports": reports}

    def _payload_numbers(self, latencies):
        """Latency of `count` events (every PREVIEW_EVERY-th with a preview) by payload."""
        payloads = {}
        for name, with_preview in (("job.progress", False), ("job.progress + preview", True)):
            sent = [seq for seq in range(self.count) if (seq % PREVIEW_EVERY == 0) == with_preview]
            if not sent:
                continue
            received_ms = [latencies[seq] * 1000 for seq in sent if seq in latencies]
            if not received_ms:
                raise BenchmarkError(f"None of the {len(sent)} {name} events arrived.")
            payloads[name] = {
                "sent": len(sent),
                "received": len(received_ms),
                "bytes": len(json.dumps(_payload(sent[0], with_preview=with_preview))),
                "p50_ms": _percentile(received_ms, 50),
                "p95_ms": _percentile(received_ms, 95),
                "max_ms": max(received_ms),
            }
        return payloads

    def _measure_reports(self, socket_):
        """Publish `reports` progress reports of each size in REPORT_JOBS both ways (the
        ways alternating, so drift in the machine's load falls on both), after one untimed
        report of each, and time each report."""
        received = queue.Queue()  # (receipt time, message text)
        stop = threading.Event()
        receiver = threading.Thread(
            target=self._receive_all, args=(socket_, received, stop), name="bench-browser"
        )
        receiver.start()
        timings = {(jobs, way): [] for jobs in REPORT_JOBS for way in REPORT_WAYS}
        try:
            number = 0
            for round_ in range(-1, self.reports):  # round -1 warms each way up
                ways = REPORT_WAYS if round_ % 2 == 0 else REPORT_WAYS[::-1]
                for jobs in REPORT_JOBS:
                    for way in ways:
                        number += 1
                        timing = self._time_report(number, jobs, way, received)
                        if round_ >= 0:
                            timings[jobs, way].append(timing)
                        time.sleep(REPORT_PAUSE_S)
        finally:
            stop.set()
            receiver.join()

        runs = []
        for (jobs, way), reports in timings.items():
            complete = [timing for timing in reports if timing is not None]
            if not complete:
                raise BenchmarkError(
                    f"None of the {len(reports)} reports of {jobs} jobs published with "
                    f"{way} arrived complete and in order."
                )
            received_ms = [received_s * 1000 for received_s, _ in complete]
            publisher_ms = [publisher_s * 1000 for _, publisher_s in complete]
            runs.append(
                {
                    "jobs": jobs,
                    "way": way,
                    "reports": len(reports),
                    "complete_in_order": len(complete),
                    "received_p50_ms": _percentile(received_ms, 50),
                    "received_p95_ms": _percentile(received_ms, 95),
                    "received_max_ms": max(received_ms),
                    "publisher_p50_ms": _percentile(publisher_ms, 50),
                    "publisher_p95_ms": _percentile(publisher_ms, 95),
                }
            )
        return {
            "reports": self.reports,
            "pause_ms": REPORT_PAUSE_S * 1000,
            "event_bytes": len(json.dumps(_report_payloads(0, 1)[0])),
            "runs": runs,
        }

    def _time_report(self, number, jobs, way, received):
        """(start → all received, publisher's time) in seconds for one report of `jobs`
        events, or None when one was lost or came out of order."""
        messages = [(self.group, payload) for payload in _report_payloads(number, jobs)]
        started = time.perf_counter()
        if way == "publish":
            for group, payload in messages:
                events.publish(group, payload)
        else:
            events.publish_all(messages)
        published = time.perf_counter()

        arrived = []  # job ids of this report's events, in the order they arrived
        last_received = None
        while len(arrived) < jobs:
            try:
                received_at, text = received.get(timeout=RECEIVE_TIMEOUT_S)
            except queue.Empty:
                return None
            message = json.loads(text)
            if message.get("report") != number:
                continue  # late from a report that timed out: not this one's
            arrived.append(message["job_id"])
            last_received = received_at
        if arrived != list(range(jobs)):
            return None
        return last_received - started, published - started

    def _receive_all(self, socket_, received, stop):
        """Every message, with the time it came, until told to stop."""
        while not stop.is_set():
            try:
                text = socket_.recv(timeout=0.1)
            except TimeoutError:
                continue
            received.put((time.perf_counter(), text))

    def _socket_slots(self):
        """The user's socket slots held in the cache: {(key, channel name)}. One of an
        earlier user of the same id (another database's) may linger until it lapses."""
        from django.core.cache import cache

        keys = [
            f"sockets:user-{self.user_id}:{number}"
            for number in range(settings.STUDIO_SOCKETS_PER_USER)
        ]
        return set(cache.get_many(keys).items())

    def _wait_for_the_socket_to_leave(self, slots_taken, timeout_s=5):
        """Until the server has handled the socket's close: its consumer leaves the
        project's group, then frees the socket slot it took. Stopping daphne before that
        would leave the channel in the group on Redis, where every later send to a project
        of that id would go to it too (ids come again with another database, such as the
        tests'). With a cache of each process's own (the tests' settings) the slot is out of
        sight: then a moment's grace, which the close takes a few milliseconds of."""
        if not slots_taken:
            time.sleep(CLOSE_GRACE_S)
            return
        deadline = time.monotonic() + timeout_s
        while slots_taken & self._socket_slots():
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"The server did not handle the socket's close in {timeout_s} s."
                )
            time.sleep(0.05)

    def _receive(self, socket_, latencies):
        """Until every event arrived, or none came for RECEIVE_TIMEOUT_S (a lost event)."""
        while len(latencies) < self.count:
            try:
                message = json.loads(socket_.recv(timeout=RECEIVE_TIMEOUT_S))
            except TimeoutError:
                return
            latencies[message["seq"]] = time.perf_counter() - message["sent_at"]

    def _log_in(self):
        """Log in through the login form, as a browser does; returns the session id."""
        cookies = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
        with opener.open(self.base_url + "/login/", timeout=30) as response:
            page = response.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"username": self.username, "password": self.password, "csrfmiddlewaretoken": token}
        request = urllib.request.Request(
            self.base_url + "/login/",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Referer": self.base_url + "/login/"},
        )
        with opener.open(request, timeout=30):
            pass
        session_id = next(
            (c.value for c in cookies if c.name == settings.SESSION_COOKIE_NAME), None
        )
        if session_id is None:
            raise BenchmarkError(f"Logging in as {self.username} through /login/ failed.")
        return session_id


def _payload(seq, *, with_preview):
    """A job.progress event as the worker sends it, plus a sequence number and send time."""
    payload = {
        "type": EventType.JOB_PROGRESS,
        "job_id": 0,
        "project_id": 0,
        "status": "running",
        "step": seq,
        "total": 25,
        "seq": seq,
        # perf_counter is CLOCK_MONOTONIC: one clock for the sender and the receiver.
        "sent_at": time.perf_counter(),
    }
    if with_preview:
        payload["preview"] = _PREVIEW
    return payload


def _report_payloads(number, jobs):
    """One progress report's events: `jobs` jobs of the project, each at a step with a
    preview (an upper bound: a job sends one about every fourth), marked with the
    report's number."""
    return [
        {**_payload(0, with_preview=True), "job_id": job, "report": number}
        for job in range(jobs)
    ]


def _preview_data_url():
    """A preview as the worker sends it: a JPEG at latent size (64x64 for a 512x512 image),
    of noise, which compresses worst: an upper bound on a real preview's size."""
    image = Image.frombytes("RGB", (64, 64), random.Random(0).randbytes(64 * 64 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_PREVIEW = _preview_data_url()


def _percentile(values, q):
    """Linear interpolation between the closest ranks, as numpy.percentile does by default
    (numpy is not a web-node dependency)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_http(url, *, alive, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server stopped before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {url} in {timeout_s} s")


if __name__ == "__main__":
    main()
