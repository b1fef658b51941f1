"""The container stack (deploy/docker-compose.yml) via testcontainers, on mutual TLS with auth on: replay, read
back, writer replaced, refused writes and cleanups, plaintext and certificate-less clients refused, PostgreSQL and
Redis over TLS only, PostgreSQL's password a file in every container and in no environment.

ODDSTORE_COMPOSE_CITUS=1 runs the same tests on the compose profile `citus` (the stack on a Citus coordinator and
two workers, `make test-compose-citus`), and one more that the tables are distributed. Opt-in: it builds Citus
from source into an image the first time and runs three PostgreSQL servers more. Measured on this shared 2-core
machine, 2026-11-27 22:14 UTC, load 1.9 rising to 5.5: all 8 passed in 5 min 16 s (the images, the Citus one
compiled from scratch, the stack started and healthy: 3 min 24 s; the writer-replacement replay 50 s); again at
22:25, the images cached, load 1.2 rising to 9.6: all 8 passed in 2 min 17 s (stack up 44 s, replay 56 s); at 23:09,
with the writer's and query's pools off Citus's shard hiding (oddstore.citus.POOL_SETTINGS), load 1.1 to 3.2: 1 min
39 s (stack up 32 s, replay 28 s; a lower load too, so not all of that is the setting). An earlier
run at a load of ~33 took 18 min and failed: the replays of the first two tests outran their 300 s.

Needs a Docker engine with the Compose v2 plugin. Without one these tests SKIP, unless
ODDSTORE_COMPOSE_TESTS=1 (CI, `make test-compose`), where they FAIL: a CI run must not pass quietly.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oddstore import tls

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REQUIRED = os.environ.get("ODDSTORE_COMPOSE_TESTS") == "1"
# Another name (ODDSTORE_COMPOSE_PROJECT) lets two checkouts on one engine run these tests side by side.
PROJECT = os.environ.get("ODDSTORE_COMPOSE_PROJECT", "oddstore-compose-test")
CITUS = os.environ.get("ODDSTORE_COMPOSE_CITUS") == "1"
# The service that holds the data: the Citus coordinator or the plain server.
DATABASE = "coordinator" if CITUS else "postgres"
STARTUP_TIMEOUT = 300.0 if CITUS else 180.0
# Credentials of the stack under test (deploy/secrets.sh), made by the `stack` fixture.
SECRETS: dict[str, Path] = {}
# The operator's TLS files, copied out of the stack's certs volume by the `stack` fixture, and an HTTPS client
# trusting the stack's CA.
OPERATOR: dict[str, tls.TlsFiles] = {}
HTTPS: dict[str, httpx.Client] = {}


def _unavailable(reason: str) -> None:
    message = f"compose tests: {reason}"
    if REQUIRED:
        pytest.fail(f"{message} (ODDSTORE_COMPOSE_TESTS=1: a Docker engine is required; see deploy/ensure-docker.sh)")
    pytest.skip(f"{message} -- SKIPPED; set ODDSTORE_COMPOSE_TESTS=1 to make this a failure")


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    for args in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(args)}` timed out"
        if done.returncode != 0:
            return f"`{' '.join(args)}` failed: {done.stderr.strip()[-300:]}"
    try:
        import testcontainers.compose  # noqa: F401
    except ImportError:
        return "the testcontainers package is not installed (dev extras)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def _psql(sql: str) -> list[list[str]]:
    done = _compose("exec", "-T", DATABASE, "psql", "-U", "postgres", "-d", "oddstore", "-At", "-F", "\t", "-c", sql)
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def _oddstore(*args: str, timeout: float = 300, token_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the CLI as the stack's operator (its ingest token), or with `token_file`'s token."""
    env = {k: v for k, v in os.environ.items() if k not in ("ODDSTORE_TOKEN", "ODDSTORE_TOKEN_FILE")}
    token = token_file or SECRETS.get("operator")
    if token is not None:
        env["ODDSTORE_TOKEN_FILE"] = str(token)
    if "operator" in OPERATOR:
        files = OPERATOR["operator"]
        env.update(ODDSTORE_TLS_CA_FILE=str(files.ca), ODDSTORE_TLS_CERT_FILE=str(files.cert))
        env["ODDSTORE_TLS_KEY_FILE"] = str(files.key)
    return subprocess.run(
        [sys.executable, "-m", "oddstore_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def _http() -> httpx.Client:
    return HTTPS["client"]


def _copy_certs(directory: Path) -> tls.TlsFiles:
    """The CA and the operator's certificate, out of the certs volume the stack's `certs` job filled."""
    for name in ("ca.pem", "operator.pem", "operator-key.pem"):
        done = _compose("run", "--rm", "--no-deps", "-T", "--entrypoint", "cat", "certs", f"/certs/{name}")
        (directory / name).write_text(done.stdout)
    (directory / "operator-key.pem").chmod(0o600)
    return tls.TlsFiles(directory / "operator.pem", directory / "operator-key.pem", directory / "ca.pem")


def _login(role: str) -> tuple[str, str]:
    """The stack's user of that role (deploy/secrets.sh names them by role)."""
    return role, SECRETS[role].read_text().strip()


def _simulate(
    path: Path, *, events: int, cycles: int, seed: int, ago: timedelta = timedelta(hours=2)
) -> list[dict[str, object]]:
    # Simulated time in the recent past: accepted by ingest's retention window and never in the future.
    start = (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = _oddstore(
        "simulate", "--output", str(path), "--events", str(events), "--cycles", str(cycles),
        "--seed", str(seed), "--start", start, "--interval", "60",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in path.read_text().splitlines()]


def _summary(stdout: str) -> dict[str, int]:
    counts = {key: int(value) for key, value in re.findall(r"^([a-z ]+?):\s+(\d+)\s*$", stdout, re.MULTILINE)}
    counts.update({key: int(value) for key, value in re.findall(r"\b(new|changed|unavailable|returned) (\d+)", stdout)})
    return counts


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    problem = _engine_problem()
    if problem:
        _unavailable(problem)
    from testcontainers.compose import DockerCompose

    # Cached: a no-op when nothing changed. Base images must exist (a registry, or `make images-offline`).
    images = ["migrate", "ingest", "writer", "query", "retention", "gateway", "cli"] + (["citus"] if CITUS else [])
    built = subprocess.run([str(DEPLOY / "build-images.sh"), *images], capture_output=True, text=True, timeout=3600)
    assert built.returncode == 0, f"building the images failed (try `make images-offline`):\n{built.stderr[-3000:]}"

    secrets = tmp_path_factory.mktemp("secrets")
    made = subprocess.run(
        [str(DEPLOY / "secrets.sh"), str(secrets)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PY": sys.executable},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    SECRETS["operator"] = secrets / "operator.token"
    SECRETS["viewer"], SECRETS["admin"] = secrets / "viewer.password", secrets / "admin.password"
    SECRETS["database"] = secrets / "database.password"
    # One more token in the stack's file, for sportybet only: what a competitor's scraper holds.
    narrow = _oddstore(
        "token", "create", "narrow", "--bookmakers", "sportybet", "--file", str(secrets / "ingest-tokens.json")
    )
    assert narrow.returncode == 0, narrow.stderr
    SECRETS["narrow"] = secrets / "narrow.token"
    SECRETS["narrow"].write_text(narrow.stdout)
    for secret in secrets.iterdir():
        secret.chmod(0o644)  # as deploy/secrets.sh: readable by the containers' user

    ports = {"ODDSTORE_INGEST_PORT": str(_free_port()), "ODDSTORE_GATEWAY_PORT": str(_free_port())}
    env = {"COMPOSE_PROJECT_NAME": PROJECT, "ODDSTORE_SECRETS_DIR": str(secrets), **ports}
    if CITUS:
        env.update(COMPOSE_PROFILES="citus", ODDSTORE_DATABASE_HOST="coordinator")
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # testcontainers runs `docker compose` with this process's environment
    compose = DockerCompose(str(DEPLOY), compose_file_name="docker-compose.yml", wait=True)
    try:
        _compose("down", "--volumes", "--remove-orphans")  # leftovers of an interrupted run
        compose.start()
        OPERATOR["operator"] = _copy_certs(tmp_path_factory.mktemp("certs"))
        context = ssl.create_default_context(cafile=str(OPERATOR["operator"].ca))
        HTTPS["client"] = httpx.Client(verify=context)
        gateway = f"https://127.0.0.1:{ports['ODDSTORE_GATEWAY_PORT']}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if _http().get(f"{gateway}/api/health", timeout=2).json().get("status") == "healthy":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the gateway did not report healthy within {STARTUP_TIMEOUT:.0f} s")
        yield {"gateway": gateway, "ingest": f"127.0.0.1:{ports['ODDSTORE_INGEST_PORT']}"}
    finally:
        try:
            if sys.exc_info()[0] is not None or os.environ.get("ODDSTORE_COMPOSE_LOGS") == "1":
                print(_compose("logs", "--no-color", "--tail", "50").stdout[-20000:], file=sys.stderr)
        finally:
            compose.stop(down=True)  # down --volumes: nothing outlives the test
            if "client" in HTTPS:
                HTTPS.pop("client").close()
            OPERATOR.clear()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_a_replayed_file_is_read_back_through_the_gateway(stack: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    snapshots = _simulate(path, events=20, cycles=1, seed=7)

    done = _oddstore("replay", str(path), "--ingest", stack["ingest"])

    assert done.returncode == 0, done.stderr
    counts = _summary(done.stdout)
    assert counts["accepted"] == len(snapshots), done.stdout
    event_ids = sorted({int(s["event"]["id"]) for s in snapshots})  # type: ignore[index]
    # The query service learns of commits through the change feed, asynchronously: a freshly started stack on a
    # busy machine may take longer than the ~15 ms measured by bench-read, so the list is polled for a while.
    listed: set[int] = set()
    deadline = time.monotonic() + 15
    while not listed >= set(event_ids) and time.monotonic() < deadline:
        listing = (
            _http()
            .get(f"{stack['gateway']}/api/events", params={"page_size": 100}, timeout=10, auth=_login("viewer"))
            .json()
        )
        listed = {e["id"] for e in listing["events"]}
        time.sleep(0.1)
    assert listed >= set(event_ids), f"not listed after 15 s: {sorted(set(event_ids) - listed)}"
    for event_id in event_ids:
        detail = _http().get(f"{stack['gateway']}/api/events/{event_id}", timeout=10, auth=_login("viewer"))
        assert detail.status_code == 200, detail.text
        assert detail.json()["id"] == event_id
        assert detail.json()["bookmakers"], f"event {event_id} has no bookmakers"


def test_replacing_the_writer_mid_stream_loses_no_acknowledged_snapshot(stack: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    snapshots = _simulate(path, events=60, cycles=8, seed=11)
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    # Small batches, one in flight: the stream lasts long enough to straddle the writer's replacement.
    replay = threading.Thread(
        target=lambda: result.setdefault(
            "replay",
            _oddstore("replay", str(path), "--ingest", stack["ingest"], "--batch-size", "10", "--concurrency", "1"),
        )
    )
    replay.start()
    time.sleep(1.5)
    assert replay.is_alive(), "the replay finished before the writer was replaced: make the stream longer"
    _compose("up", "-d", "--no-deps", "--force-recreate", "writer", timeout=120)
    replay.join(timeout=300)

    done = result["replay"]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-3000:]}"
    counts = _summary(done.stdout)
    assert counts.get("not acknowledged", 0) == 0 and counts["rejected"] == 0, done.stdout
    assert counts["accepted"] + counts["superseded"] == len(snapshots), done.stdout

    # Every acknowledged snapshot is in the database: each (event, bookmaker) stands at its newest snapshot ...
    newest: dict[tuple[int, str], datetime] = {}
    for s in snapshots:
        key = (int(s["event"]["id"]), str(s["bookmaker"]))  # type: ignore[index]
        at = datetime.fromisoformat(str(s["captured_at"]).replace("Z", "+00:00"))
        newest[key] = max(newest.get(key, at), at)
    ids = ",".join(str(event_id) for event_id, _ in newest)
    rows = _psql(
        "SELECT event_id, bookmaker_slug, extract(epoch FROM captured_at) FROM latest_snapshots "
        f"WHERE event_id IN ({ids})"
    )
    stored = {(int(e), b): datetime.fromtimestamp(float(t), UTC) for e, b, t in rows}
    assert stored == newest
    # ... and every transition acknowledged as written has its history row (a batch committed whose answer
    # was lost in the restart is retried and comes back SUPERSEDED: then there are more rows, never fewer).
    transitions = counts["new"] + counts["changed"] + counts["unavailable"] + counts["returned"]
    (history,) = _psql(f"SELECT count(*) FROM market_odds_history WHERE event_id IN ({ids})")
    assert int(history[0]) >= transitions > 0


def test_writes_without_a_token_or_beyond_it_are_refused_and_leave_the_database_unchanged(
    stack: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "feed.jsonl"
    # Every seed simulates event ids from 1,000,000 on: an hour later than anything the earlier tests wrote for
    # them, so that the sportybet snapshots below are new (accepted), never superseded by an earlier test's.
    snapshots = _simulate(path, events=3, cycles=1, seed=13, ago=timedelta(hours=1))
    ids = ",".join(sorted({str(s["event"]["id"]) for s in snapshots}))  # type: ignore[index]
    others = f"SELECT event_id, bookmaker_slug, captured_at FROM latest_snapshots WHERE event_id IN ({ids})"
    others += " AND bookmaker_slug <> 'sportybet' ORDER BY 1, 2"
    before = _psql(others)

    for forged in ("odt_not-a-token", "Basic b3BlcmF0b3I6eA=="):
        wrong = tmp_path / "wrong.token"
        wrong.write_text(forged + "\n")
        refused = _oddstore("replay", str(path), "--ingest", stack["ingest"], token_file=wrong)
        assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stdout + refused.stderr, refused.stderr
    assert _psql(others) == before

    # The stack's token for sportybet only: the other bookmakers' snapshots are rejected, nothing of them written.
    narrow = _oddstore("replay", str(path), "--ingest", stack["ingest"], token_file=SECRETS["narrow"])
    assert narrow.returncode == 1 and "may not write 'betpawa'" in narrow.stdout, narrow.stdout
    assert _summary(narrow.stdout)["accepted"] == sum(s["bookmaker"] == "sportybet" for s in snapshots)
    assert _psql(others) == before


def test_a_viewer_may_not_clean_up_and_the_database_is_unchanged(stack: dict[str, str]) -> None:
    gateway = stack["gateway"]
    runs = _psql("SELECT count(*) FROM cleanup_runs")
    assert _http().get(f"{gateway}/api/cleanup/history", timeout=10).status_code == 401
    refused = _http().post(f"{gateway}/api/cleanup/execute", json={"oddsRetentionDays": 1}, auth=_login("viewer"))
    assert refused.status_code == 403, refused.text
    assert _http().post(f"{gateway}/api/cleanup/execute", auth=("admin", "forged")).status_code == 401
    assert _psql("SELECT count(*) FROM cleanup_runs") == runs
    assert _http().get(f"{gateway}/api/settings", timeout=10, auth=_login("admin")).status_code == 200


async def _health(address: str, files: tls.TlsFiles) -> grpc.StatusCode:
    async with tls.channel(address, files) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_ingest_and_the_gateway_answer_only_over_tls_and_ingest_only_to_a_certificate_of_the_stack(
    stack: dict[str, str],
) -> None:
    operator = OPERATOR["operator"]
    assert asyncio.run(_health(stack["ingest"], operator)) == grpc.StatusCode.OK
    assert asyncio.run(_health(stack["ingest"], tls.PLAINTEXT)) == grpc.StatusCode.UNAVAILABLE
    assert asyncio.run(_health(stack["ingest"], tls.TlsFiles(ca=operator.ca))) == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(httpx.HTTPError):
        httpx.get(stack["gateway"].replace("https://", "http://") + "/api/health", timeout=10)


# Run inside the query container, on the stack's network: a client of PostgreSQL and Redis as the services are.
PROBE = """
import asyncio, sys
from redis.asyncio import Redis
from oddstore import db

async def postgres(url):
    try:
        # As the services log in: the password from DATABASE_PASSWORD_FILE, unless the probe is told otherwise.
        password = db.password_from_environment() if "nopassword" not in sys.argv else None
        conn = await db.connect(url, password=password, timeout=20)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    try:
        return "ssl" if await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") else "plain"
    finally:
        await conn.close()

async def redis(url):
    client = Redis.from_url(url, socket_connect_timeout=20, socket_timeout=20)
    try:
        return "pong" if await client.ping() else "no pong"
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    finally:
        await client.aclose()

kind, url = sys.argv[1:3]
print(asyncio.run(postgres(url) if kind == "postgres" else redis(url)))
"""


def _probe(kind: str, url: str, *options: str) -> str:
    done = _compose("exec", "-T", "query", "python", "-c", PROBE, kind, url, *options, timeout=120)
    return done.stdout.strip()


def test_postgres_and_redis_answer_only_over_tls_on_the_stacks_network(stack: dict[str, str]) -> None:
    # The services' own settings, as the query container has them: TLS, and they work.
    database_url, redis_url = _probe_env("DATABASE_URL"), _probe_env("REDIS_URL")
    assert "sslmode=verify-full" in database_url and redis_url.startswith("rediss://")
    assert _probe("postgres", database_url) == "ssl"
    assert _probe("redis", redis_url) == "pong"

    # Plaintext: PostgreSQL has no pg_hba.conf line for it, Redis no plaintext port.
    plain_pg = _probe("postgres", database_url.split("?")[0] + "?sslmode=disable")
    assert plain_pg.startswith("refused:") and "no encryption" in plain_pg, plain_pg
    plain_redis = _probe("redis", "redis://redis:6379/0")
    assert plain_redis.startswith("refused:"), plain_redis
    # TLS without a client certificate: Redis asks for one (it has no password here).
    anonymous = _probe("redis", "rediss://redis:6379/0?ssl_ca_certs=/certs/ca.pem")
    assert anonymous.startswith("refused:"), anonymous

    # Every network client of PostgreSQL (the writer's, query's and retention's pools) is on TLS.
    clients = _psql(
        "SELECT s.ssl, count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
        "WHERE a.client_addr IS NOT NULL GROUP BY 1"
    )
    assert dict(clients).keys() == {"t"}, clients


def _probe_env(name: str) -> str:
    return _compose("exec", "-T", "query", "printenv", name).stdout.strip()


def test_the_database_password_is_a_file_in_every_container_and_in_no_environment_command_or_log(
    stack: dict[str, str],
) -> None:
    password = SECRETS["database"].read_text().strip()
    assert len(password) >= 24
    # Every container of the stack, the finished one-shot jobs (certs, migrate) included.
    ids = _compose("ps", "--all", "--quiet").stdout.split()
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, check=True).stdout)
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in inspected}
    clients = {"migrate", "writer", "query", "retention"}
    assert {DATABASE, *clients} <= services, services
    for container in inspected:
        name = container["Config"]["Labels"]["com.docker.compose.service"]
        env = dict(entry.partition("=")[::2] for entry in container["Config"]["Env"] or [])
        # Nowhere in what `docker inspect` shows (environment, command, entrypoint, labels) ...
        assert password not in json.dumps(container), f"{name}: the password is in `docker inspect`"
        assert not {"POSTGRES_PASSWORD", "PGPASSWORD"} & env.keys(), name
        # ... but as the secret file, for the servers and the clients of PostgreSQL.
        if name in clients:
            assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/database-password", name
            assert "@" in env["DATABASE_URL"] and ":" not in env["DATABASE_URL"].split("@")[0].split("//")[1], name
        if name == DATABASE or (CITUS and name in ("worker1", "worker2")):
            assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/database-password", name
    # Not inherited by the running server either (the entrypoint reads the file into an unexported variable).
    # As the server's own user: root in the container lacks CAP_SYS_PTRACE, which reading another user's needs.
    server_env = _compose("exec", "-T", "--user", "postgres", DATABASE, "cat", "/proc/1/environ").stdout
    assert "POSTGRES_PASSWORD_FILE=" in server_env and password not in server_env
    assert password not in _compose("logs", "--no-color").stdout

    # The file's password is the login: without it the URL alone is refused, with it the services' way works.
    url = _probe_env("DATABASE_URL")
    refused = _probe("postgres", url, "nopassword")
    assert refused.startswith("refused:") and "password" in refused, refused
    assert _probe("postgres", url) == "ssl"


@pytest.mark.skipif(not CITUS, reason="the stack on plain PostgreSQL; ODDSTORE_COMPOSE_CITUS=1 runs it on Citus")
def test_on_citus_the_odds_tables_are_distributed_by_event_over_both_workers_which_the_coordinator_reaches_over_tls(
    stack: dict[str, str],
) -> None:
    nodes = _psql("SELECT nodename, groupid FROM pg_dist_node WHERE isactive ORDER BY groupid")
    assert nodes == [["coordinator", "0"], ["worker1", "1"], ["worker2", "2"]]
    tables = dict(
        _psql(
            "SELECT logicalrelid::text, CASE partmethod WHEN 'h' THEN 'by ' || column_to_column_name(logicalrelid, "
            "partkey) ELSE partmethod::text END || ' group ' || colocationid FROM pg_dist_partition"
        )
    )
    distributed = ("latest_snapshots", "market_odds_current", "market_odds_history")
    groups = {tables.get(table, "not distributed") for table in distributed}
    assert len(groups) == 1 and groups.pop().startswith("by event_id group "), tables
    # The rows the earlier tests wrote through ingest are in shards on both workers.
    placed = _psql(
        "WITH e AS MATERIALIZED (SELECT DISTINCT event_id FROM market_odds_current) SELECT s.nodename, count(*) "
        "FROM e JOIN citus_shards s ON s.table_name = 'market_odds_current'::regclass "
        "AND s.shardid = get_shard_id_for_distribution_column('market_odds_current', e.event_id) GROUP BY 1 ORDER BY 1"
    )
    assert [node for node, _ in placed] == ["worker1", "worker2"], placed
    # The coordinator's own connections to the workers are TLS too (citus.node_conninfo).
    ssl = _psql(
        "SELECT nodename, result FROM run_command_on_workers("
        "$$SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()$$) ORDER BY 1"
    )
    assert ssl == [["worker1", "t"], ["worker2", "t"]]
