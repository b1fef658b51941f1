#!/usr/bin/env bash
# Build the wheelhouse the images install from (deploy/.wheelhouse, gitignored): pip inside `docker
# build` cannot reach the package index here (TLS chain not trusted in the image), and air-gapped
# sites build the same way. Reused as long as pyproject.toml is unchanged (stamp = its sha256).
#   requirements.txt        runtime dependencies of the services, the migration job and the CLI (the
#                           `embedded` extra is not among them: the stack runs PostgreSQL as its own container)
#   requirements-build.txt  grpcio-tools, for the image stage that generates the gRPC code
# The wheels are for CPython 3.11 on manylinux x86-64 (the image is Debian 12's python3 3.11 or the
# official python:3.11-slim-bookworm); the host's Python must be 3.11.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/deploy/.wheelhouse"
PY=${WHEEL_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3

# Only what the wheelhouse is made of: the runtime dependencies, grpcio-tools' pin and this script.
stamp=$( { "$PY" -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(p["dependencies"], [r for r in p["optional-dependencies"]["dev"] if r.startswith("grpcio-tools")])' \
    "$ROOT/pyproject.toml"; cat "$0"; } | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
    echo "wheelhouse: up to date ($OUT)" >&2
    exit 0
fi

"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "wheelhouse: $PY is not Python 3.11; set WHEEL_PYTHON" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
"$PY" - "$ROOT/pyproject.toml" "$OUT" <<'PYEOF'
import re, sys, tomllib
pyproject, out = sys.argv[1], sys.argv[2]
project = tomllib.load(open(pyproject, "rb"))["project"]
name = lambda req: re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower()
build = [r for r in project["optional-dependencies"]["dev"] if name(r) == "grpcio-tools"]
open(f"{out}/requirements.txt", "w").write("\n".join(project["dependencies"]) + "\n")
open(f"{out}/requirements-build.txt", "w").write("\n".join(build) + "\n")
PYEOF
# pip wheel resolves and builds the whole closure; the host's pip configuration (mirrors, CA) applies.
quiet() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }
"$PY" -m pip wheel --quiet --wheel-dir "$OUT" -r "$OUT/requirements.txt" -r "$OUT/requirements-build.txt" 2> >(quiet)
# Markers are evaluated for the host's Python, and pip download --python-version does not change
# python_full_version. Debian 12's python3 is 3.11.2, for which redis also needs async-timeout
# (`python_full_version < "3.11.3"`): such marker-only extras are listed here and added explicitly.
"$PY" -m pip wheel --quiet --wheel-dir "$OUT" ${IMAGE_MARKER_EXTRAS:-"async-timeout>=4.0.3"} 2> >(quiet)
echo "$stamp" > "$OUT/.stamp"
echo "wheelhouse: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT" >&2
