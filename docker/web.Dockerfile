# syntax=docker/dockerfile:1
# The web node: Django + Channels under uvicorn. Never installs torch (README "Containers").
# Build from the repository root: docker build -f docker/web.Dockerfile .

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
RUN pip install ".[s3]"
COPY . .
# Static files are collected into the image; the web serves them itself (WhiteNoise).
ENV STATIC_ROOT=/app/staticfiles
RUN pip install --no-deps -e . \
    && SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

FROM python:3.12-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATIC_ROOT=/app/staticfiles
RUN useradd --create-home --uid 10001 studio
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "docker/healthcheck.py", "/healthz"]
# One process; compose.yaml runs a worker per core (uvicorn --workers), as README advises.
CMD ["uvicorn", "studio.asgi:application", "--host", "0.0.0.0", "--port", "8000"]
