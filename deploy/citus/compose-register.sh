#!/bin/sh
# One-shot job of the compose profile `citus`: the citus extension in database $PGDATABASE on the coordinator and
# every worker, the password the nodes use between themselves, the coordinator's own host name and each worker
# registered; over TLS verified against the stack's CA, as every client. Idempotent: a later start changes nothing.
#   compose-register.sh COORDINATOR WORKER...   (PGDATABASE, PGUSER, DATABASE_PASSWORD_FILE and PGSSL* from the
#   environment)
set -eu
coordinator=$1
shift
password_file=${DATABASE_PASSWORD_FILE:?the file of the password of PGUSER}
[ -r "$password_file" ] || { echo "compose-register: DATABASE_PASSWORD_FILE=$password_file is not readable" >&2; exit 1; }
# The password from the secret into a .pgpass of our own (in /tmp, the container's tmpfs), never into the
# environment: libpq wants that file private to its user (0600), which the bind-mounted secret is not.
PGPASSFILE=$(mktemp)
printf '*:*:*:*:%s\n' "$(sed -e 's/[\\:]/\\&/g' "$password_file")" > "$PGPASSFILE"
export PGPASSFILE
psql_on() {  # psql_on HOST [psql args]: statements on stdin
    host=$1
    shift
    psql -X -q -v ON_ERROR_STOP=1 -h "$host" "$@"
}
for host in "$coordinator" "$@"; do
    echo "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS citus;" | psql_on "$host"
done
# The nodes connect to each other (node id 0: any node; -1: a node to itself) as $PGUSER, with TLS as
# citus.node_conninfo says and this password, which Citus copies to the workers with its metadata. psql reads the
# file itself (a backquoted \set), so the password is on no command line.
psql_on "$coordinator" -v password_file="$password_file" <<'SQL'
\set password `cat :'password_file'`
INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo)
SELECT v.n, current_user, 'password=''' || replace(replace(:'password', '\', '\\'), '''', '\''') || ''''
FROM (VALUES (0), (-1)) AS v(n)
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_authinfo a WHERE a.nodeid = v.n AND a.rolename = current_user);
SQL
echo "SELECT citus_set_coordinator_host('$coordinator', 5432);" | psql_on "$coordinator" -o /dev/null
for worker in "$@"; do
    psql_on "$coordinator" -o /dev/null <<SQL
SELECT citus_add_node('$worker', 5432) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodename = '$worker');
SQL
done
psql_on "$coordinator" -tA -c "SELECT 'citus nodes: ' || string_agg(nodename || ' group ' || groupid, ', ' ORDER BY groupid) FROM pg_dist_node"
