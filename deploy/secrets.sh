#!/usr/bin/env bash
# The credentials the compose stack reads as secrets (files, never environment variables), made once into DIR
# (default deploy/secrets, gitignored) and kept: PostgreSQL's password (database.password: the server's
# POSTGRES_PASSWORD_FILE, the services' and migrations' DATABASE_PASSWORD_FILE); ingest's tokens file with a token
# for the simulator profile (simulator.token) and one for an operator's `oddstore replay` (operator.token); the
# gateway's users file with an admin and a viewer, their passwords in admin.password and viewer.password.
# Re-running changes nothing; delete DIR to start over (and the stack's database volume with it: PostgreSQL takes
# the password at its first start only). Needs the host's .venv (`make setup`).
#   deploy/secrets.sh [DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$ROOT/deploy/secrets}
PY=${PY:-$ROOT/.venv/bin/python}
BOOKMAKERS=betpawa,sportybet,bet9ja
oddstore() { (cd "$ROOT" && "$PY" -m oddstore_cli.main "$@"); }

mkdir -p "$DIR"
chmod 0700 "$DIR"
if [ ! -f "$DIR/database.password" ]; then
    # 192 random bits, URL-safe: no character that a URL, a .pgpass line or SQL quoting would have to escape.
    (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' > "$DIR/database.password.new")
    mv "$DIR/database.password.new" "$DIR/database.password"
    echo "secrets: PostgreSQL's password in $DIR/database.password" >&2
fi
if [ ! -f "$DIR/ingest-tokens.json" ]; then
    for name in simulator operator; do
        oddstore token create "$name" --bookmakers "$BOOKMAKERS" --file "$DIR/ingest-tokens.json" \
            > "$DIR/$name.token" 2>/dev/null
    done
    echo "secrets: ingest tokens in $DIR (operator: ODDSTORE_TOKEN_FILE=$DIR/operator.token)" >&2
fi
if [ ! -f "$DIR/gateway-users.json" ]; then
    for role in admin viewer; do
        "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))' > "$DIR/$role.password"
        oddstore user add "$role" --role "$role" --file "$DIR/gateway-users.json" --password-stdin \
            < "$DIR/$role.password" 2>/dev/null
    done
    echo "secrets: gateway users admin and viewer, passwords in $DIR/admin.password and viewer.password" >&2
fi
# Readable by the containers' users (uid 10001; postgres in the database containers), who are not this host's
# user: compose bind-mounts file secrets as they are. The directory's 0700 keeps other users of this host out.
chmod 0644 "$DIR"/*
