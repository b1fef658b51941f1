#!/usr/bin/env bash
# Make a Docker engine and the Compose v2 plugin available on a Debian 12 build machine.
# Idempotent: a fast no-op when the engine answers and `docker compose` works. Fails loudly (exit 1,
# tail of the daemon log) when the engine cannot be started. See ../../shared/reference/containers.md:
# Debian's docker.io gives the engine; Compose v2 is not in Debian 12, so the static plugin binary is
# taken from Debian 13's docker-compose .deb and dropped into the CLI plugin directory.
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
TRIXIE_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { echo "ensure-docker: ERROR: $*" >&2; exit 1; }
log() { echo "ensure-docker: $*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }
compose_ok() { docker compose version >/dev/null 2>&1; }

if engine_up && compose_ok; then
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root to install/start the Docker engine"

if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

if ! compose_ok; then
    log "installing the Compose v2 plugin from Debian 13's docker-compose package"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/etc/apt/sources.list.d" "$tmp/state/lists/partial" "$tmp/cache/archives/partial"
    echo "deb $TRIXIE_MIRROR trixie main" > "$tmp/etc/apt/sources.list"
    # A private apt configuration so the host's sources and pinning are left exactly as they were.
    apt_opts=(-o "Dir::Etc::SourceList=$tmp/etc/apt/sources.list" -o "Dir::Etc::SourceParts=$tmp/etc/apt/sources.list.d"
              -o "Dir::State::Lists=$tmp/state/lists" -o "Dir::Cache::Archives=$tmp/cache/archives"
              -o "Dir::Cache=$tmp/cache" -o "APT::Get::List-Cleanup=0")
    apt-get "${apt_opts[@]}" update -qq || die "cannot read the trixie package index from $TRIXIE_MIRROR"
    (cd "$tmp" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null) || die "cannot download docker-compose .deb"
    dpkg -x "$tmp"/docker-compose_*.deb "$tmp/x"
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/docker-compose"
    compose_ok || die "docker compose plugin installed in $PLUGIN_DIR but 'docker compose version' fails"
fi

if ! engine_up; then
    if [ -S /var/run/docker.sock ] && ! pgrep -x dockerd >/dev/null; then
        rm -f /var/run/docker.sock /var/run/docker.pid  # stale from an earlier, dead daemon
    fi
    if ! pgrep -x dockerd >/dev/null; then
        log "starting dockerd (log: $LOG)"
        # containerd is started by dockerd itself when not already running.
        nohup dockerd >>"$LOG" 2>&1 &
    fi
    for _ in $(seq 1 60); do
        engine_up && break
        sleep 1
    done
    if ! engine_up; then
        echo "---- last lines of $LOG ----" >&2
        tail -n 40 "$LOG" >&2 || true
        die "the Docker engine did not come up within 60 s"
    fi
fi

# Smoke check that the engine can actually run something is left to the image builds: there is no
# registry to pull hello-world from.
log "engine $(docker version --format '{{.Server.Version}}'), $(docker compose version --short 2>/dev/null | sed 's/^/compose /')"
