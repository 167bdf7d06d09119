# The two commands: `make run` (serve the studio, embedded mode) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-fast worker bench bench-gallery bench-policy bench-faults bench-uploads bench-load bench-api

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch pinned first so no other requirement can pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[gpu,test]"
	touch $(INSTALLED)

install: $(INSTALLED)

# Embedded mode: SQLite, in-memory channel layer, in-process worker, the tiny model
# when none is configured. REDIS_URL and DATABASE_URL are ignored here on purpose.
run: $(INSTALLED)
	env -u REDIS_URL -u DATABASE_URL DEBUG=1 $(BIN)/python manage.py migrate --noinput
	env -u REDIS_URL -u DATABASE_URL DEBUG=1 $(BIN)/python manage.py setup_demo
	@echo "Serving the studio on http://$(HOST):$(PORT)/"
	env -u REDIS_URL -u DATABASE_URL DEBUG=1 $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

# Uses PostgreSQL and Redis (and real Celery workers) when DATABASE_URL / REDIS_URL are set.
# mypy checks the modules with complete type hints (grow the list as more get them);
# MEDIA_ROOT because django-stubs loads tests.settings, which would make a temporary folder.
test: $(INSTALLED)
	$(BIN)/ruff check .
	env MEDIA_ROOT=$(CURDIR)/var/media $(BIN)/mypy generation/leases.py generation/sweeper.py \
		generation/recipe.py generation/services.py generation/admission.py studio/dispatch.py \
		studio/permissions.py generation/choices.py generation/signals.py gallery/signals.py \
		gallery/publication.py studio/accounts/project_cards.py generation/progress.py \
		studio/accounts/hashers.py
	$(BIN)/python -m pytest

# The inner loop: lint and every test that runs neither the tiny models nor real processes
# (the `slow` marker, set in tests/conftest.py). `make test` still runs everything.
test-fast: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

# A GPU (or CPU) worker for the distributed mode; needs REDIS_URL and DATABASE_URL.
worker: $(INSTALLED)
	$(BIN)/celery -A studio worker -Q gpu --loglevel INFO

# CPU benchmarks into docs/BENCHMARKS.md (its CPU section is replaced): the engine vs plain
# diffusers on the tiny model, then Poisson arrivals to the engine batching continuously and
# batch-at-a-time, and event latency worker → browser socket on the configured
# channel layer (Redis when REDIS_URL is set). The event benchmark gets a database of its
# own: starting the app resumes unfinished jobs. GPU: python -m gpu_workers.bench.gpu --help
# The web-tier benchmarks live in bench/ (a package no web node imports).
bench: $(INSTALLED)
	$(BIN)/python -m gpu_workers.bench.engine_cpu --json var/bench/engine_cpu.json
	env DATABASE_URL=sqlite:///$(CURDIR)/var/bench/events.sqlite3 DEBUG=1 $(BIN)/python manage.py migrate --noinput --verbosity 0
	env DATABASE_URL=sqlite:///$(CURDIR)/var/bench/events.sqlite3 DEBUG=1 $(BIN)/python -m bench.events --json var/bench/events.json
	$(BIN)/python -m gpu_workers.bench.report docs/BENCHMARKS.md --engine var/bench/engine_cpu.json --events var/bench/events.json --command "make bench"

# Gallery pages with 10,000 images on PostgreSQL (127.0.0.1:5432, user postgres, trust auth;
# BENCH_POSTGRES_URL for another server) in a throwaway database it drops afterwards:
# server time, queries and index use per page, into docs/BENCHMARKS.md.
bench-gallery: $(INSTALLED)
	$(BIN)/python -m bench.gallery --write docs/BENCHMARKS.md

# 50 locust users (bench/load_users.py) for 2 minutes against the distributed mode with the
# recommended web setup (uvicorn, a worker per core, DATABASE_POOL_SIZE=8) on 127.0.0.1
# only: a throwaway PostgreSQL database with 10,000 images and a throwaway Redis (needs
# redis-server); p95 per route and the load average into docs/BENCHMARKS.md.
bench-load: $(INSTALLED)
	$(BIN)/python -m bench.load --write docs/BENCHMARKS.md

# A prompt-policy check on a 2,000-character prompt with the worst regex the policy form
# accepts (found by timing adversarial patterns), into docs/BENCHMARKS.md. No database.
bench-policy: $(INSTALLED)
	$(BIN)/python -m bench.policy --write docs/BENCHMARKS.md

# Real Celery workers on a throwaway PostgreSQL and Redis (needs their server binaries):
# time from a GPU worker's SIGKILL to its job running again, and images/s with 1, 2 and 4
# GPU worker processes, into docs/BENCHMARKS.md.
bench-faults: $(INSTALLED)
	$(BIN)/python -m bench.faults --write docs/BENCHMARKS.md

# Peak server memory and time for the largest accepted and the most hostile refused upload
# of each kind (image bombs, 30 subject photos, 100 MB / million-tensor .safetensors
# headers), each in a process of its own on a throwaway SQLite database, into
# docs/BENCHMARKS.md.
bench-uploads: $(INSTALLED)
	$(BIN)/python -m bench.uploads --write docs/BENCHMARKS.md

# The HTTP API's overhead on top of the job on PostgreSQL (127.0.0.1:5432, user postgres,
# trust auth; BENCH_POSTGRES_URL for another server) in a throwaway database it drops
# afterwards: server time of job creation and of reading a finished job and its image,
# p50/p95 over 300 calls, and job creations/s from 4 clients, into docs/BENCHMARKS.md.
bench-api: $(INSTALLED)
	$(BIN)/python -m bench.api --write docs/BENCHMARKS.md
