# syntax=docker/dockerfile:1
# A CPU worker: thumbnails, moderation scans (NudeNet on onnxruntime) and the sweeper's
# passes. Never installs torch (README "Containers").
# Build from the repository root: docker build -f docker/cpu-worker.Dockerfile .

FROM python:3.12-slim-bookworm AS build
# pdqhash ships no wheels: it is compiled here, and the compiler stays in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /app
# Dependencies first, from pyproject.toml alone (no packages yet), so that a code change
# reuses this layer; then the project itself, editable, so it runs from /app.
COPY pyproject.toml README.md ./
# Versions are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[s3,moderation]"
COPY . .
RUN pip install --no-deps -e .

FROM python:3.12-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 10001 studio
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001
# Healthy while the worker answers its control messages through the broker.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "celery -A studio inspect ping --destination celery@$HOSTNAME --timeout 10 || exit 1"]
CMD ["celery", "-A", "studio", "worker", "-Q", "default,moderation", "--loglevel", "INFO"]
