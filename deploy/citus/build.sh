#!/usr/bin/env bash
# Builds Citus from the vendored upstream tarball into the machine's PostgreSQL 15 (issue 12).
# Idempotent: a no-op when the installed citus is already this version, so CI pays the ~2 min build once
# per machine. Usage: deploy/citus/build.sh [TARBALL]   (default: ../shared/vendor/ beside the repo root)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VERSION=13.2.2
TARBALL="${1:-$ROOT/../shared/vendor/citus-$VERSION.tar.gz}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
BUILD_DIR="${CITUS_BUILD_DIR:-$ROOT/.data/citus-build}"

control="$("$PG_CONFIG" --sharedir 2>/dev/null)/extension/citus.control"
if [ -f "$control" ] && grep -q "default_version = '${VERSION%.*}-" "$control" \
   && [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] \
   && [ "$(cat "$("$PG_CONFIG" --pkglibdir)/citus.version" 2>/dev/null)" = "$VERSION" ]; then
  echo "citus $VERSION already installed"
  exit 0
fi

[ -f "$TARBALL" ] || { echo "no Citus tarball at $TARBALL" >&2; exit 1; }

echo "== build dependencies (Debian)"
export DEBIAN_FRONTEND=noninteractive
deps=(gcc make postgresql-server-dev-15 libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev
      libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev)
if ! dpkg -s "${deps[@]}" >/dev/null 2>&1; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${deps[@]}" >/dev/null
fi

echo "== unpack $TARBALL into $BUILD_DIR"
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
tar -xzf "$TARBALL" -C "$BUILD_DIR" --strip-components=1
cd "$BUILD_DIR"

# Newer PostgreSQL 15 releases (15.20 here; not 15.18, Debian 12's main archive) export have_createdb_privilege();
# 13.2.2's compat header also defines a static inline one ("static declaration follows non-static declaration").
# Where the server's headers declare it, drop the header's copy in the unpacked tree (the server's function does
# the same); where they do not, the header's copy is the only one and stays. The vendored tarball stays untouched.
if grep -qs 'have_createdb_privilege' "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h"; then
echo "== the server exports have_createdb_privilege(): the compat header's copy removed"
python3 - src/include/pg_version_compat.h <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
fixed, n = re.subn(r"static inline bool\s+have_createdb_privilege\(void\)\s*\{.*?\n\}\n", "", text, flags=re.S)
if n != 1:
    sys.exit(f"expected one have_createdb_privilege definition in {path}, found {n}")
open(path, "w").write(fixed)
PY
fi

echo "== configure, make, install"
./configure PG_CONFIG="$PG_CONFIG" >/dev/null
make -j"${CITUS_BUILD_JOBS:-2}" >/dev/null
make install >/dev/null
# The control file names only major.minor; this stamp lets the next run see the exact version.
echo "$VERSION" > "$("$PG_CONFIG" --pkglibdir)/citus.version"
echo "citus $VERSION installed"
