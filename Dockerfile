# imagereflector controller image: `docker build -t imagereflector:latest .`
#
# Stage 1 builds the wheel from the source tree (only pyproject.toml, README.md and
# imagereflector/ are in the build context, see .dockerignore). Stage 2 installs it with
# its dependencies into a virtual environment and runs it as nobody (65534:65534) on a
# read-only root filesystem: the only writable places are the /data and /tmp volumes.
# tests/deploy/test_image_steps.py runs these same install steps without Docker.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY imagereflector ./imagereflector
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=builder /wheels /wheels
# pip byte-compiles while the filesystem is still writable, so nothing needs to be
# compiled (or written) at run time.
RUN python -m venv /opt/imagereflector \
    && /opt/imagereflector/bin/pip install /wheels/*.whl \
    && rm -rf /wheels \
    && mkdir -p /data \
    && chown 65534:65534 /data
# No writes outside /data and /tmp at run time: no .pyc files, HOME and the temporary
# directory (cloud SDK caches, aiohttp, tempfile) on the /tmp volume, logs unbuffered.
ENV PATH=/opt/imagereflector/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
USER 65534:65534
WORKDIR /tmp
EXPOSE 8080 9440
ENTRYPOINT ["imagereflector", "controller"]
