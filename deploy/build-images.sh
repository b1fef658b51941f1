#!/usr/bin/env bash
# Build the service images, each on its own from its own Dockerfile (deploy/docker/NAME.Dockerfile),
# tagged oddstore/NAME:VERSION and oddstore/NAME:latest. VERSION = pyproject version + git short sha
# (+ "-dirty" for a tree with uncommitted changes), or $ODDSTORE_VERSION.
# Usage: deploy/build-images.sh [NAME...]   (default: all). The builder's layer cache makes an image whose
# inputs (its Dockerfile, the wheelhouse, protos/, oddstore/, its own folder) did not change a no-op:
# same image id, new tag. `citus` (deploy/docker/citus.Dockerfile, the compose profile `citus`) is built only
# when named: it compiles Citus (minutes) from the vendored tarball, CITUS_TARBALL (default ../shared/vendor/).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ALL=(migrate ingest writer query retention gateway cli)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")

if [ -z "${ODDSTORE_VERSION:-}" ]; then
    version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n1)
    sha=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
    dirty=$(git status --porcelain 2>/dev/null | head -n1)
    ODDSTORE_VERSION="$version-$sha${dirty:+-dirty}"
fi

"$ROOT/deploy/wheelhouse.sh"
if [[ " ${names[*]} " == *" citus "* ]]; then
    tarball=${CITUS_TARBALL:-$ROOT/../shared/vendor/citus-13.2.2.tar.gz}
    [ -f "$tarball" ] || { echo "build-images: no Citus tarball at $tarball (set CITUS_TARBALL)" >&2; exit 1; }
    mkdir -p deploy/.citus
    cmp -s "$tarball" deploy/.citus/citus-13.2.2.tar.gz || cp "$tarball" deploy/.citus/citus-13.2.2.tar.gz
fi

# Debian 12's engine has no buildx; the classic builder handles these Dockerfiles and caches per layer.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
for name in "${names[@]}"; do
    [ -f "deploy/docker/$name.Dockerfile" ] || { echo "build-images: no deploy/docker/$name.Dockerfile" >&2; exit 1; }
    start=$(date +%s)
    docker build --quiet -f "deploy/docker/$name.Dockerfile" \
        -t "oddstore/$name:$ODDSTORE_VERSION" -t "oddstore/$name:latest" . >/dev/null
    size=$(docker image inspect -f '{{.Size}}' "oddstore/$name:latest" | awk '{printf "%.0f MB", $1/1e6}')
    echo "build-images: oddstore/$name:$ODDSTORE_VERSION ($size, $(( $(date +%s) - start )) s)" >&2
done
