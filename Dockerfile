# click-deploy's own image: the bot (`serve`: workers and HTTP) or a worker alone (`worker`).
#
#   docker build -t click-deploy .
#   docker build --build-arg BASE=localhost:5000/library/python:3.11-slim-bookworm .  # a mirror
#   docker build --target buildctl -t click-deploy:buildctl .  # adds buildctl (BUILDER=buildkitd)
#
# Build with BuildKit (DOCKER_BUILDKIT=1, or buildx): the default target then never pulls the
# buildkit stage. The base is an official Python image, or the same through a mirror.
ARG BASE=python:3.11-slim-bookworm
ARG BUILDKIT_IMAGE=moby/buildkit:v0.17.3

# ---------------------------------------------------------------- build: a virtualenv
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/click-deploy \
    && /opt/click-deploy/bin/pip install --quiet setuptools wheel
WORKDIR /src
# The dependencies first, from pyproject.toml alone (empty packages stand in for the code),
# so changing the code reuses this layer.
COPY pyproject.toml ./
RUN mkdir -p bot pipeline/db/migrations \
    && touch README.md bot/__init__.py pipeline/__init__.py pipeline/db/__init__.py \
    && /opt/click-deploy/bin/pip install --quiet --no-build-isolation . \
    && /opt/click-deploy/bin/pip uninstall --quiet --yes click-deploy
COPY README.md ./
COPY bot bot
COPY pipeline pipeline
RUN /opt/click-deploy/bin/pip install --quiet --no-deps --no-build-isolation . \
    && /opt/click-deploy/bin/python -m compileall -q /opt/click-deploy

# ---------------------------------------------------------------- runtime
FROM ${BASE} AS runtime
# git clones the deployments' commits; nothing else is added to the base.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/click-deploy --shell /usr/sbin/nologin click-deploy
COPY --from=build /opt/click-deploy /opt/click-deploy
# The GitHub App manifest /github/setup posts (bot/github/manifest.py looks here too).
COPY app.yml /opt/click-deploy/share/click-deploy/app.yml
ENV PATH=/opt/click-deploy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/var/lib/click-deploy \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    LOG_FORMAT=json \
    LOCAL_SERVICES=false
USER 10001:10001
WORKDIR /var/lib/click-deploy
VOLUME ["/var/lib/click-deploy"]
EXPOSE 8080
# Liveness only (/healthz); orchestrators should gate traffic on /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["click-deploy"]
CMD ["serve"]

# ---------------------------------------------------------------- with buildctl
# For BUILDER=buildkitd: the buildctl client next to the bot (docker-compose.yml uses it).
FROM ${BUILDKIT_IMAGE} AS buildkit
FROM runtime AS buildctl
COPY --from=buildkit /usr/bin/buildctl /usr/local/bin/buildctl

# ---------------------------------------------------------------- default: the bot
FROM runtime
