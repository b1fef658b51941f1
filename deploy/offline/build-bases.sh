#!/usr/bin/env bash
# Offline stand-ins for the public base images the Dockerfiles and the compose file name, built from
# Debian packages with debootstrap and imported under the SAME names, so the ordinary Dockerfiles build
# where no container registry is reachable. An image that already exists is left alone (cache between
# runs); FORCE=1 rebuilds. Needs root, debootstrap and a reachable Debian mirror.
#   python:3.11-slim-bookworm  python3 (3.11.2) + venv, a `python` alias
#   postgres:15                Debian's postgresql-15 + an entrypoint honouring POSTGRES_USER/PASSWORD(_FILE)/DB
#                              (an existing image with an older entrypoint gets the current one on top)
#   redis:7                    Debian's redis-server (7.0)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
WORK=${BASES_WORKDIR:-/var/tmp/oddstore-bases}
FORCE=${FORCE:-0}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:15}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7}

log() { echo "build-bases: $*" >&2; }
have() { [ "$FORCE" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

command -v debootstrap >/dev/null || { log "installing debootstrap"; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null; }
mkdir -p "$WORK"

# Shrink a root file system the way the official slim images do: no docs, man pages, locales or apt lists.
slim() {
    local root=$1
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/usr/share/lintian
    find "$root"/usr/lib -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true
}

# bootstrap NAME PACKAGES: a minbase root file system under $WORK/NAME (rebuilt from scratch each time).
bootstrap() {
    local name=$1 packages=$2 root="$WORK/$1"
    rm -rf "$root"
    log "debootstrap $name ($packages)"
    debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$MIRROR" >"$WORK/$name.log" 2>&1 \
        || { tail -n 30 "$WORK/$name.log" >&2; log "debootstrap $name failed"; return 1; }
    # Containers keep the apt sources usable (the Debian archive is reachable from containers).
    echo "deb $MIRROR $SUITE main" > "$root/etc/apt/sources.list"
    slim "$root"
}

import_image() {  # import_image NAME IMAGE [docker import -c changes...]
    local root="$WORK/$1" image=$2; shift 2
    local changes=()
    for c in "$@"; do changes+=(-c "$c"); done
    tar --numeric-owner -C "$root" -c . | docker import "${changes[@]}" - "$image" >/dev/null
    rm -rf "$root"
    log "imported $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
}

build_python() {
    have "$PYTHON_IMAGE" && { log "$PYTHON_IMAGE exists, skipped"; return 0; }
    bootstrap python "python3,python3-venv,ca-certificates,netbase,tzdata"
    # The official image's interpreter answers to `python` too.
    ln -sf python3 "$WORK/python/usr/bin/python"
    import_image python "$PYTHON_IMAGE" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'ENV LANG=C.UTF-8' 'CMD ["python3"]'
}

build_postgres() {
    if have "$POSTGRES_IMAGE"; then
        if docker run --rm --entrypoint cat "$POSTGRES_IMAGE" /usr/local/bin/docker-entrypoint.sh 2>/dev/null \
            | cmp -s - "$HERE/postgres-entrypoint.sh"; then
            log "$POSTGRES_IMAGE exists, skipped"
            return 0
        fi
        # Built from an older entrypoint: the current one as a layer on top, in seconds rather than a debootstrap.
        printf 'FROM %s\nCOPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n' "$POSTGRES_IMAGE" \
            | DOCKER_BUILDKIT=0 docker build --quiet -t "$POSTGRES_IMAGE" -f - "$HERE" >/dev/null
        log "$POSTGRES_IMAGE: entrypoint updated"
        return 0
    fi
    bootstrap postgres "postgresql-15,gosu,tzdata"
    install -m 0755 "$HERE/postgres-entrypoint.sh" "$WORK/postgres/usr/local/bin/docker-entrypoint.sh"
    rm -rf "$WORK/postgres/var/lib/postgresql/15"  # the cluster Debian's package made; ours is in PGDATA
    mkdir -p "$WORK/postgres/var/lib/postgresql/data" "$WORK/postgres/var/run/postgresql"
    chroot "$WORK/postgres" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
    chmod 2777 "$WORK/postgres/var/run/postgresql"
    import_image postgres "$POSTGRES_IMAGE" \
        'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV PGDATA=/var/lib/postgresql/data' 'ENV LANG=C.UTF-8' 'VOLUME /var/lib/postgresql/data' \
        'EXPOSE 5432' \
        'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["postgres"]'
}

build_redis() {
    have "$REDIS_IMAGE" && { log "$REDIS_IMAGE exists, skipped"; return 0; }
    bootstrap redis "redis-server,redis-tools"
    mkdir -p "$WORK/redis/data"
    chroot "$WORK/redis" chown redis:redis /data
    # The official image runs redis-server as user redis with protected mode off (it is reached over
    # the compose network only) and /data as its working directory.
    import_image redis "$REDIS_IMAGE" 'WORKDIR /data' 'VOLUME /data' 'EXPOSE 6379' 'USER redis' \
        'CMD ["redis-server", "--protected-mode", "no", "--dir", "/data"]'
}

# Independent: the three debootstraps run side by side (the mirror, not the CPU, is the bottleneck).
pids=()
build_python & pids+=($!)
build_postgres & pids+=($!)
build_redis & pids+=($!)
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ "$rc" = 0 ] || { log "FAILED: see $WORK/*.log"; exit 1; }
