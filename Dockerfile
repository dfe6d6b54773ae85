# ganzoo in a CUDA-capable image; the default command runs the Prefect pipeline flow on the
# embedded params.yaml (bundled digits data, no download). docs/orchestration.md has the
# `docker run --gpus all` recipes with mounts for data, MLflow and the DVC cache.
#
#   docker build -t ganzoo .                # --build-arg UID=$(id -u) to own mounted folders
#   docker run --rm --gpus all ganzoo
ARG BASE=pytorch/pytorch:2.8.0-cuda12.9-cudnn9-runtime
FROM ${BASE}

# make: the README's install target; git: DVC needs it when a clone is mounted (`dvc repro`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*

ARG UID=1000
ARG GID=1000
# --non-unique: some bases already have a user with uid 1000 (ubuntu:24.04's `ubuntu`).
RUN groupadd --non-unique --gid "${GID}" ganzoo \
    && useradd --non-unique --uid "${UID}" --gid "${GID}" --create-home ganzoo \
    && install -d -o ganzoo -g ganzoo /home/ganzoo/app
USER ganzoo
WORKDIR /home/ganzoo/app

# The venv lives outside the code folder, so a clone mounted over /home/ganzoo/app (or anywhere)
# keeps using it; make reads VENV from the environment (`VENV ?= .venv`). PYTHONPATH makes
# `flows` importable from any working directory (Prefect workers start runs elsewhere).
ENV VENV=/home/ganzoo/venv \
    VENV_FLAGS=--system-site-packages \
    PATH=/home/ganzoo/venv/bin:$PATH \
    PYTHONPATH=/home/ganzoo/app \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

# Installed exactly as the README does (`make install`: venv + pip install -e ".[dev]"), in a
# layer of its own that is rebuilt only when these files change. VENV_FLAGS lets the venv see
# the base image's CUDA torch, which satisfies pyproject's range, so pip fetches no second copy.
COPY --chown=ganzoo:ganzoo Makefile pyproject.toml README.md ./
COPY --chown=ganzoo:ganzoo src ./src
RUN make install

COPY --chown=ganzoo:ganzoo . .
# A mounted clone is owned by the host user; let git (and so DVC) work in it anyway.
RUN git config --global --add safe.directory '*'

CMD ["python", "-m", "flows.pipeline"]
