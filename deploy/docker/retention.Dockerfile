# syntax=docker/dockerfile:1
# Built from the repository root: docker build -f deploy/docker/NAME.Dockerfile .  (see deploy/build-images.sh)
# Python dependencies come only from the wheelhouse built on the host (deploy/wheelhouse.sh): pip inside
# a build cannot reach the package index here, and air-gapped sites build the same way.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The same two first stages in every Dockerfile, so the builder's cache shares them between images.
FROM ${PYTHON_IMAGE} AS deps
COPY deploy/.wheelhouse/ /wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /wheels/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes --quiet pip \
 && find /opt/venv -name '*.pyc' -path '*/tests/*' -delete

# gRPC code is generated here from protos/, the only contract between services, instead of copied from
# the host: the image then depends on nothing the host generated, and a change to protos/ alone
# invalidates exactly the images that include it.
FROM ${PYTHON_IMAGE} AS proto
COPY deploy/.wheelhouse/ /wheels/
RUN python3 -m venv /opt/tools \
 && /opt/tools/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /wheels/requirements-build.txt
COPY protos/ /src/protos/
RUN mkdir -p /gen \
 && /opt/tools/bin/python -m grpc_tools.protoc -I /src/protos --python_out=/gen --grpc_python_out=/gen \
        /src/protos/oddstore/v1/*.proto

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin oddstore
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LOG_FORMAT=json
COPY oddstore/ oddstore/
COPY --from=proto /gen/oddstore/v1/ oddstore/v1/
COPY services/__init__.py services/
COPY services/retention/ services/retention/
# Configuration only through the environment (README); listen on every interface inside the container.
ENV RETENTION_LISTEN=0.0.0.0:50054
USER 10001
EXPOSE 50054
# main.py handles SIGTERM: NOT_SERVING, in-flight calls drained for SHUTDOWN_GRACE_SECONDS, then exit.
STOPSIGNAL SIGTERM
# gRPC health over loopback, with the service's TLS files when it has them (oddstore/healthcheck.py).
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 CMD ["python", "-m", "oddstore.healthcheck", "grpc", "RETENTION_LISTEN"]
CMD ["python", "-m", "services.retention.main"]
