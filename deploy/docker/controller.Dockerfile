# syntax=docker/dockerfile:1
# The rlscale controller image: the `controller` extra only (numpy, pyyaml, rich, kubernetes,
# prometheus-client; no torch, no simulator dependencies), the default policy bundle, a
# non-root user, nothing written at run time (works with readOnlyRootFilesystem: true).
#
#   docker build -f deploy/docker/controller.Dockerfile -t REGISTRY/rlscale-controller:0.1.0 .
#
# Paths the manifests in deploy/ rely on (tests/test_deploy.py checks them):
#   /etc/rlscale/controller.yaml             the config (a ConfigMap mounted at /etc/rlscale)
#   /opt/rlscale/policies/hetero-3pool-ppo   the shipped bundle (rlscale/policies/ in the package)
#   port 8080                                /metrics, /healthz, /readyz (config `http.port`)

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------- build
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/rlscale/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY rlscale ./rlscale
# A regular (non-editable) install: the package, its bundle and compiled bytecode all land in
# the venv, so nothing needs to be written when the controller starts.
RUN /opt/rlscale/venv/bin/pip install ".[controller]" \
 && /opt/rlscale/venv/bin/python -c "import importlib.util as u; \
assert u.find_spec('torch') is None, 'torch must not be in the controller image'"

# ---------------------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="rlscale-controller" \
      org.opencontainers.image.description="RL autoscaler and router for vLLM pools on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/rlscale/venv /opt/rlscale/venv
# A fixed path for the packaged policy bundles, whatever the Python version.
RUN ln -s "$(/opt/rlscale/venv/bin/python -c 'import pathlib, rlscale; print(pathlib.Path(rlscale.__file__).parent / "policies")')" \
          /opt/rlscale/policies \
 && test -f /opt/rlscale/policies/hetero-3pool-ppo/bundle.json \
 && groupadd --system --gid 65532 rlscale \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin rlscale \
 && mkdir -p /etc/rlscale
ENV PATH=/opt/rlscale/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["rlscale"]
CMD ["controller", "--config", "/etc/rlscale/controller.yaml"]
