#!/usr/bin/env bash
# A local Citus cluster for tests and benchmarks (issue 12): a coordinator on BASE_PORT and two workers on the
# next two ports, each an initdb cluster on 127.0.0.1 with its data and sockets under DIR, trust auth, user
# postgres. Usage: deploy/citus/cluster.sh start|stop|status DIR [BASE_PORT (default 9700)] [NODE]
# `start` is idempotent (initialises what is missing, starts what is stopped, registers what is unregistered);
# `stop` stops every node, or only NODE (coordinator, worker1, worker2): the worker-restart test stops one.
set -euo pipefail
USAGE="usage: cluster.sh start|stop|status DIR [BASE_PORT] [NODE (stop only)]"
ACTION="${1:?$USAGE}"
DIR="${2:?$USAGE}"
BASE_PORT="${3:-9700}"
ONLY="${4:-}"
BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
NODES=(coordinator worker1 worker2)

# The servers refuse to run as root: as root, everything runs as the postgres user, which owns DIR.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
port_of() { echo $((BASE_PORT + $1)); }
sql() {  # sql PORT STATEMENT: in the postgres database of that node
  PGOPTIONS="-c client_min_messages=warning" as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAc "$2"
}

start() {
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  for i in "${!NODES[@]}"; do
    local data="$DIR/${NODES[$i]}" port
    port="$(port_of "$i")"
    if [ ! -f "$data/PG_VERSION" ]; then
      as_pg "$BIN/initdb" -D "$data" -U postgres --auth=trust --no-sync >/dev/null
      # fsync off: a throwaway test cluster, not a store of record. citus.shard_count 4 instead of 32: every
      # daily history partition is a shard per count, and the tests create many databases and partitions.
      cat >>"$data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
shared_preload_libraries = 'citus'
max_prepared_transactions = 200
max_connections = 300
max_worker_processes = 64
fsync = off
full_page_writes = off
citus.shard_count = 4
CONF
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$data" -l "$DIR/${NODES[$i]}.log" -w -t 60 start >/dev/null
    fi
    sql "$port" "CREATE EXTENSION IF NOT EXISTS citus"
  done
  local coordinator
  coordinator="$(port_of 0)"
  # A transaction a worker had prepared when it stopped keeps its row locks until the coordinator's recovery
  # commits it, every citus.recover_2pc_interval (default 1 min): writes to those rows wait as long. 5 s here,
  # so that the worker-restart test does not wait a minute (ALTER SYSTEM: clusters made before this change too).
  sql "$coordinator" "ALTER SYSTEM SET citus.recover_2pc_interval TO '5s'"
  sql "$coordinator" "SELECT pg_reload_conf()" >/dev/null
  sql "$coordinator" "SELECT citus_set_coordinator_host('127.0.0.1', $coordinator)" >/dev/null
  for i in 1 2; do
    sql "$coordinator" "SELECT citus_add_node('127.0.0.1', $(port_of "$i"))
      WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = $(port_of "$i"))" >/dev/null
  done
  echo "citus cluster up: coordinator postgresql://postgres@127.0.0.1:$coordinator/postgres"
  sql "$coordinator" "SELECT nodename || ':' || nodeport || ' group ' || groupid FROM pg_dist_node ORDER BY groupid"
}

stop() {
  local nodes=("${NODES[@]}")
  if [ -n "$ONLY" ]; then
    [[ " ${NODES[*]} " == *" $ONLY "* ]] || { echo "no node $ONLY: one of ${NODES[*]}" >&2; exit 2; }
    nodes=("$ONLY")
  fi
  for node in "${nodes[@]}"; do
    if [ -f "$DIR/$node/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DIR/$node" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DIR/$node" -m fast -w stop >/dev/null
    fi
  done
  echo "citus cluster under $DIR: ${nodes[*]} stopped"
}

status() {
  for node in "${NODES[@]}"; do
    printf '%s: ' "$node"
    as_pg "$BIN/pg_ctl" -D "$DIR/$node" status >/dev/null 2>&1 && echo running || echo stopped
  done
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac
