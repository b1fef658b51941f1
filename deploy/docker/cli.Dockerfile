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
# The command-line client (`oddstore replay`, `oddstore simulate`): the compose file's simulator profile.
COPY oddstore_cli/ oddstore_cli/
RUN printf '#!/bin/sh\nexec python -m oddstore_cli.main "$@"\n' > /usr/local/bin/oddstore && chmod 0755 /usr/local/bin/oddstore
ENV ODDSTORE_INGEST=ingest:50051
# Mount points of the compose `certs` job (`oddstore certs`): a named volume mounted here for the first time
# takes this directory's owner, so the job, which runs as 10001 like every service, can write into it.
RUN mkdir -p /certs /ca && chown 10001:10001 /certs /ca && chmod 0700 /ca
USER 10001
STOPSIGNAL SIGTERM
ENTRYPOINT ["oddstore"]
CMD ["--help"]
