# syntax=docker/dockerfile:1
# The rlscale image for training and evaluation jobs (`rlscale train`, `rlscale evaluate`,
# `rlscale tune`, `rlscale simulate`): the `train` extra on a CPU build of PyTorch.
#
#   docker build -f deploy/docker/train.Dockerfile -t REGISTRY/rlscale-train:0.1.0 .
#
# PyTorch is installed first, from PyTorch's CPU wheel index: a plain `pip install torch` on
# Linux x86_64 takes PyPI's CUDA build and several GB of NVIDIA libraries that training here
# does not use (PPO on a small MLP is CPU-bound; the simulator is numpy). The project asks for
# a range (torch>=2.2,<3), which the pinned CPU build satisfies, so the second install adds
# nothing torch-related. To build on PyPI's wheel instead (e.g. on aarch64, where PyPI's is the
# CPU build): --build-arg TORCH_INDEX_URL=https://pypi.org/simple
#
# Runs as a non-root user with a read-only root filesystem: the jobs mount a volume at /runs
# (outputs) and an emptyDir at /tmp (HOME, matplotlib's cache) - see deploy/jobs/.

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/rlscale/venv \
 && /opt/rlscale/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY rlscale ./rlscale
RUN /opt/rlscale/venv/bin/pip install ".[train]" \
 && /opt/rlscale/venv/bin/python -c "import torch; print('torch', torch.__version__)" \
 && rm -rf /src \
 && groupadd --system --gid 65532 rlscale \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
            --shell /usr/sbin/nologin rlscale \
 && mkdir -p /runs && chown 65532:65532 /runs

ENV PATH=/opt/rlscale/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
USER 65532:65532
WORKDIR /runs
ENTRYPOINT ["rlscale"]
CMD ["train", "--help"]
