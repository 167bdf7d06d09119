"""Throwaway PostgreSQL and Redis servers and real Celery processes, for fault injection.

Each server lives in a temporary folder on a free port, and the tests stop, kill and
restart it at will: the shared instances on 5432 and 6379 are never touched. Used by the
fault-injection tests (tests/faults/) and their benchmark (bench/faults.py).
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir():
    """The newest PostgreSQL server binaries (Debian keeps them out of PATH), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def missing_binaries():
    """What the fault-injection harness needs and this machine lacks (empty when ready)."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("PostgreSQL server binaries (initdb, pg_ctl)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser (PostgreSQL refuses to run as root)")
    return missing


def wait_until(condition, timeout, what, interval=0.2):
    """Poll `condition` until it returns something true; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class PostgresError(RuntimeError):
    """A PostgreSQL program failed; the message has its output and the server's log."""


class PostgresServer:
    """A PostgreSQL cluster of its own (trust auth, no fsync) that can be stopped and
    started again with its data kept, as a database restart is."""

    def __init__(self):
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="studio-faults-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root (CI runs as root): its files are postgres'.
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "--encoding=UTF8", "--locale=C.UTF-8")

    def _run(self, program, *args):
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.dir)
        if done.returncode:
            raise PostgresError(
                f"{program} exited with {done.returncode}:\n{done.stdout}{done.stderr}\n"
                f"{self._log_tail()}"
            )

    def _log_tail(self):
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def url(self, database="studio"):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self):
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self, mode="fast"):
        """`fast` disconnects every client and shuts down cleanly; `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def is_running(self):
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True).returncode == 0

    def create_database(self, name, template="template1"):
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-T", template, name)

    def destroy(self):
        try:
            self.stop("immediate")
        except PostgresError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A Redis without persistence: a restart loses every key, messages included."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="studio-faults-redis-"))
        self.process = None

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=(self.dir / "redis.log").open("a"), stderr=subprocess.STDOUT,
        )
        wait_until(self.answers, 30, f"redis-server on port {self.port}")

    def answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        """SIGKILL: nothing is saved, as when a host dies."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def destroy(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class CeleryProcesses:
    """Real `celery -A studio` worker and beat processes on the given services, each
    logging to its own file; GPU workers can be killed and started again."""

    def __init__(self, *, database_url, redis_url, media_root, logs, env=None, gpu_env=None):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "MEDIA_ROOT": str(media_root),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.gpu_env = {**self.env, **(gpu_env or {})}  # GPU workers only
        self.processes = {}  # name -> Popen
        self.started_with = {}  # name -> (args, env), to start it again
        self.starts = 0

    def _start(self, name, args, env=None):
        self.started_with[name] = (args, env)
        self.starts += 1
        log = (self.logs / f"{name}.log").open("a")
        log.write(f"\n----- start {self.starts} -----\n")
        log.flush()
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "studio", *args],
            cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        return self.processes[name]

    def start_gpu_worker(self, name):
        return self._start(name, [
            "worker", "-Q", self.env.get("STUDIO_GPU_QUEUE", "gpu"), "--loglevel", "INFO",
            "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle",
        ], env=self.gpu_env)

    def start_cpu_worker(self, name="cpu"):
        return self._start(name, [
            "worker", "-Q", "default,moderation", "--concurrency", "2", "--loglevel", "INFO",
            "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle",
        ])

    def start_beat(self, name="beat"):
        return self._start(name, [
            "beat", "--loglevel", "INFO", "--schedule", str(self.logs / "beat-schedule"),
        ])

    def kill(self, name):
        """SIGKILL: no warm shutdown, no message acked or given back."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

    def live_pids(self):
        return {process.pid for process in self.processes.values() if process.poll() is None}

    def name_of(self, pid):
        return next(name for name, process in self.processes.items() if process.pid == pid)

    def exited(self):
        """{name: exit code} of the processes that stopped without being killed by us."""
        return {
            name: process.returncode
            for name, process in self.processes.items()
            if process.poll() is not None and process.returncode != -signal.SIGKILL
        }

    def restart_crashed(self, signature):
        """Start again, as a supervisor would, the processes that exited with `signature`
        in their log since their last start; the names restarted."""
        crashed = [
            name for name in self.exited()
            if signature in self.log_text(name).rsplit("----- start", 1)[-1]
        ]
        for name in crashed:
            self._start(name, *self.started_with[name])
        return crashed

    def log_text(self, name):
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
