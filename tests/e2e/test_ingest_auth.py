"""Ingest authentication and authorization against real ingest and writer servers over real PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from prometheus_client import REGISTRY

from oddstore import tokens
from oddstore.convert import snapshot_to_pb
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2
from oddstore_cli.main import main as cli
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.factories import market, new_event_id, now, snapshot

ACCEPTED = snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED
REJECTED = snapshot_pb2.SNAPSHOT_STATUS_REJECTED


class Tokens:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sportybet = tokens.add(path, "sportybet-scraper", ["sportybet"])
        self.both = tokens.add(path, "pawa-scraper", ["betpawa", "bet9ja"])


@pytest.fixture
async def writer(migrated_dsn: str) -> AsyncIterator[writer_bootstrap.WriterApp]:
    app = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    yield app
    await app.stop(1)


@pytest.fixture
def issued(tmp_path: Path) -> Tokens:
    return Tokens(tmp_path / "tokens.json")


@pytest.fixture
async def ingest(writer: writer_bootstrap.WriterApp, issued: Tokens) -> AsyncIterator[ingest_bootstrap.IngestApp]:
    settings = IngestSettings(
        listen="127.0.0.1:0", writers=f"127.0.0.1:{writer.server.port}", auth_tokens_file=issued.path
    )
    app = await ingest_bootstrap.start(settings)
    yield app
    await app.stop(1)


async def _submit(
    port: int, snapshots: list[snapshot_pb2.Snapshot], token: str | None, host: str = "127.0.0.1"
) -> ingest_pb2.SubmitSnapshotsResponse:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        response: ingest_pb2.SubmitSnapshotsResponse = await ingest_pb2_grpc.IngestServiceStub(channel).SubmitSnapshots(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=snapshots), timeout=30, metadata=metadata
        )
        return response


async def _written(dsn: str, events: list[int]) -> set[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id FROM market_odds_current WHERE event_id = ANY($1)"
            " UNION SELECT event_id FROM latest_snapshots WHERE event_id = ANY($1)",
            events,
        )
        return {r[0] for r in rows}
    finally:
        await conn.close()


@pytest.mark.parametrize("token", [None, "odt_not-a-token", "Basic xyz"])
async def test_a_call_without_a_known_token_is_unauthenticated_and_writes_nothing(
    ingest: ingest_bootstrap.IngestApp, migrated_dsn: str, token: str | None
) -> None:
    e = new_event_id()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _submit(ingest.server.port, [snapshot_to_pb(snapshot(e, now(), [market()]))], token)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await _written(migrated_dsn, [e]) == set()


async def test_a_snapshot_for_a_bookmaker_the_token_does_not_cover_is_rejected_and_not_written(
    ingest: ingest_bootstrap.IngestApp, issued: Tokens, migrated_dsn: str
) -> None:
    allowed, forbidden, t = new_event_id(), new_event_id(), now()
    response = await _submit(
        ingest.server.port,
        [
            snapshot_to_pb(snapshot(allowed, t, [market()], bookmaker="sportybet")),
            snapshot_to_pb(snapshot(forbidden, t, [market()], bookmaker="betpawa")),
        ],
        issued.sportybet,
    )
    assert [r.status for r in response.results] == [ACCEPTED, REJECTED]
    assert "bookmaker: token 'sportybet-scraper' may not write 'betpawa'" in response.results[1].reason
    assert await _written(migrated_dsn, [allowed, forbidden]) == {allowed}


async def test_an_allowed_batch_is_written_and_attributed_to_its_token_in_logs_and_metrics(
    ingest: ingest_bootstrap.IngestApp, issued: Tokens, migrated_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    def accepted() -> float:
        labels = {"client": "pawa-scraper", "status": "accepted"}
        return REGISTRY.get_sample_value("oddstore_ingest_client_snapshots_total", labels) or 0.0

    before = accepted()
    e, t = new_event_id(), now()
    with caplog.at_level(logging.INFO, logger="services.ingest"):
        response = await _submit(
            ingest.server.port,
            [snapshot_to_pb(snapshot(e, t, [market()], bookmaker=b)) for b in ("betpawa", "bet9ja")],
            issued.both,
        )
    assert [r.status for r in response.results] == [ACCEPTED, ACCEPTED]
    assert await _written(migrated_dsn, [e]) == {e}
    assert accepted() == before + 2
    assert any("batch from pawa-scraper: 2 accepted" in r.getMessage() for r in caplog.records)
    assert not any(issued.both in r.getMessage() for r in caplog.records)


async def test_the_tokens_file_is_read_again_when_it_changes_and_a_broken_change_keeps_the_tokens_in_force(
    ingest: ingest_bootstrap.IngestApp, issued: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    async def status(token: str) -> grpc.StatusCode:
        batch = [snapshot_to_pb(snapshot(new_event_id(), now(), [market()], bookmaker="sportybet"))]
        try:
            response = await _submit(ingest.server.port, batch, token)
        except grpc.aio.AioRpcError as error:
            return error.code()
        assert [r.status for r in response.results] == [ACCEPTED]
        return grpc.StatusCode.OK

    late = tokens.add(issued.path, "late-scraper", ["sportybet"])  # while ingest runs
    assert await status(late) == grpc.StatusCode.OK
    data = json.loads(issued.path.read_text())
    data["tokens"] = [t for t in data["tokens"] if t["name"] != "sportybet-scraper"]
    issued.path.write_text(json.dumps(data))
    assert await status(issued.sportybet) == grpc.StatusCode.UNAUTHENTICATED
    with caplog.at_level(logging.ERROR, logger="oddstore.entry_files"):
        issued.path.write_text('{"tokens": [')
        assert await status(late) == grpc.StatusCode.OK
        assert await status(issued.sportybet) == grpc.StatusCode.UNAUTHENTICATED
    broken = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(broken) == 1 and str(issued.path) in broken[0] and "not JSON" in broken[0]


async def test_replay_sends_the_token_from_the_environment_or_the_option(
    ingest: ingest_bootstrap.IngestApp, issued: Tokens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oddstore_cli.arguments import submit_options
    from oddstore_cli.main import build_parser
    from oddstore_cli.replay import replay

    e = new_event_id()
    line = json.dumps({
        "event": {"id": e, "sportradar_id": f"sr:match:{e}", "name": "A - B", "home_team": "A", "away_team": "B",
                  "kickoff": "2030-02-28T15:00:00Z"},
        "bookmaker": "sportybet", "captured_at": now().isoformat().replace("+00:00", "Z"),
        "markets": [{"market_id": "1", "outcomes": [{"name": "1", "odds": 2.0}, {"name": "2", "odds": 2.0}]}],
    })  # fmt: skip
    path = tmp_path / "one.jsonl"
    path.write_text(line + "\n")
    target = f"127.0.0.1:{ingest.server.port}"

    async def run(*argv: str) -> int:
        args = build_parser().parse_args(["replay", str(path), "--ingest", target, *argv])
        return await replay(str(path), submit_options(args), out=io.StringIO(), err=io.StringIO())

    assert await run() == 2  # no token: refused for good, never acknowledged
    monkeypatch.setenv("ODDSTORE_TOKEN", issued.both)
    assert await run() == 1  # a token that does not cover sportybet: rejected
    assert await run("--token", issued.sportybet) == 0


def test_token_create_prints_the_token_once_and_stores_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    assert cli(["token", "create", "scraper-1", "--bookmakers", "betpawa,sportybet", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith(tokens.TOKEN_PREFIX) and token not in err and token not in path.read_text()
    assert tokens.load(path)[tokens.token_hash(token)].bookmakers == {"betpawa", "sportybet"}
    with pytest.raises(SystemExit):
        cli(["token", "create", "scraper-2", "--bookmakers", "Bet Pawa", "--file", str(path)])
    assert len(tokens.load(path)) == 1


def _own_non_loopback_address() -> str | None:
    # A UDP "connect" sends nothing; it only picks the interface a packet out would leave by.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2: never a real peer
        except OSError:
            return None
        address: str = s.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_without_a_tokens_file_only_loopback_clients_may_write(
    writer: writer_bootstrap.WriterApp, migrated_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    address = _own_non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    with caplog.at_level(logging.WARNING, logger="services.ingest"):
        app = await ingest_bootstrap.start(
            IngestSettings(listen="0.0.0.0:0", writers=f"127.0.0.1:{writer.server.port}")
        )
    try:
        assert any("INGEST_AUTH_TOKENS_FILE is not set" in r.getMessage() for r in caplog.records)
        remote, local = new_event_id(), new_event_id()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _submit(app.server.port, [snapshot_to_pb(snapshot(remote, now(), [market()]))], None, address)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        response = await _submit(app.server.port, [snapshot_to_pb(snapshot(local, now(), [market()]))], None)
        assert [r.status for r in response.results] == [ACCEPTED]
        assert await _written(migrated_dsn, [remote, local]) == {local}
    finally:
        await app.stop(1)
