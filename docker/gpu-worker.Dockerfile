# syntax=docker/dockerfile:1
# A GPU worker (generation, or LoRA training with `-Q train --concurrency 1`): torch's CUDA
# build, diffusers and the rest of the `gpu` extra (README "Containers").
# Build from the repository root: docker build -f docker/gpu-worker.Dockerfile .
#
# torch 2.13's CUDA 12 build is cu126 (its stable lines are CUDA 12.6 and 13.0). Its wheels
# bring their own CUDA libraries (the nvidia-* packages), so the image needs no CUDA toolkit
# or runtime of its own: the `base` flavour adds what the NVIDIA Container Toolkit needs, and
# the host needs an NVIDIA driver for CUDA 12.6 or newer.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
# pdqhash ships no wheels: it is compiled here, and the compiler stays in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
# The CUDA build of torch first, from PyTorch's cu126 index: the `gpu` extra's
# torch==2.13.0 is then met by 2.13.0+cu126, and nothing pulls another build from PyPI.
# A layer of its own (gigabytes), kept when other dependencies change.
# hadolint ignore=DL3059
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu126
WORKDIR /app
# Dependencies first, from pyproject.toml alone (no packages yet), so that a code change
# reuses this layer; then the project itself, editable, so it runs from /app.
COPY pyproject.toml README.md ./
# Versions are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[gpu,s3]"
COPY . .
RUN pip install --no-deps -e .

FROM ${CUDA_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The Hugging Face and LoRA caches live in ~/.cache: a volume there keeps downloaded weights
# across restarts, owned by the worker's user.
RUN useradd --create-home --uid 10001 studio \
    && mkdir /home/studio/.cache \
    && chown studio:studio /home/studio/.cache
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001
# Healthy while the worker answers its control messages through the broker.
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s --retries=3 \
    CMD ["sh", "-c", "celery -A studio inspect ping --destination celery@$HOSTNAME --timeout 10 || exit 1"]
CMD ["celery", "-A", "studio", "worker", "-Q", "gpu", "--loglevel", "INFO"]
