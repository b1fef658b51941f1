"""On Citus (make test-citus): the write-path acceptance workload leaves exactly what it leaves on plain PostgreSQL,
also when a worker is restarted in the middle of it."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest

from tests.conftest import REPO_ROOT, Templates, drop_database, dsn_for_database, dsn_for_node
from tests.polling import eventually
from tests.write_workload import Batch, Client, Contents, contents, differences, workload, write_path

CLUSTER = REPO_ROOT / "deploy" / "citus" / "cluster.sh"
# Longer than anything a healthy cluster needs, and than Citus's recovery of a transaction a worker had
# prepared when it stopped (citus.recover_2pc_interval, 5 s on the test cluster): only a lost write ends here.
RECOVERED_WITHIN = 120.0


@pytest.fixture(scope="module", autouse=True)
def citus_only(on_citus: bool) -> None:  # module-scoped: before the reference run, which is module-scoped too
    if not on_citus:
        pytest.skip("SKIPPED LOUDLY: Citus only, run by make test-citus (here TEST_DATABASE_URL is plain PostgreSQL)")


@pytest.fixture(scope="module")
def plain_templates() -> Iterator[Templates]:
    url = os.environ.get("TEST_PLAIN_DATABASE_URL")
    if not url:
        pytest.skip(
            "SKIPPED LOUDLY: nothing to compare Citus with: set TEST_PLAIN_DATABASE_URL to a plain PostgreSQL server"
            " (make test-citus passes TEST_DATABASE_URL's)"
        )
    made = Templates(url)
    yield made
    made.drop_all()


@dataclass(frozen=True)
class Reference:
    batches: list[Batch]
    contents: Contents


@pytest.fixture(scope="module")
async def reference(plain_templates: Templates) -> Reference:
    """The workload run once into a fresh database on plain PostgreSQL, and what it left there."""
    batches = workload()
    name = plain_templates.clone("migrated")
    dsn = dsn_for_database(plain_templates.server_dsn, name)
    try:
        async with write_path(dsn) as stub:
            await Client(stub).run(batches)
        return Reference(batches, await contents(dsn))
    finally:
        drop_database(plain_templates.server_dsn, name)


async def test_the_write_path_workload_leaves_the_same_rows_on_citus_as_on_plain_postgresql(
    reference: Reference, make_migrated_database: Callable[[], str]
) -> None:
    dsn = make_migrated_database()
    async with write_path(dsn) as stub:
        client = Client(stub)
        await client.run(reference.batches)

    assert client.failures == []
    assert reference.contents["market_odds_history"], "the workload wrote no history: nothing was compared"
    assert len(reference.contents["market_odds_history partitions"]) == 2, "the workload spans two days"
    found = await contents(dsn)
    assert found == reference.contents, differences(reference.contents, found, names=("plain", "citus"))


@dataclass(frozen=True)
class Worker:
    """A worker of a cluster started by deploy/citus/cluster.sh, which stops it and starts it again."""

    directory: Path
    base_port: int
    node: str

    async def _cluster(self, action: str, *nodes: str) -> None:
        process = await asyncio.create_subprocess_exec(
            str(CLUSTER), action, str(self.directory), str(self.base_port), *nodes,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
        assert process.returncode == 0, f"cluster.sh {action} failed: {output.decode()}"

    async def stop(self) -> None:
        await self._cluster("stop", self.node)  # a fast shutdown: its sessions are ended, as in a restart

    async def start(self) -> None:
        await self._cluster("start")


@pytest.fixture
async def worker(pg_server_dsn: str) -> AsyncIterator[Worker]:
    conn = await asyncpg.connect(pg_server_dsn)
    try:
        host, port = await conn.fetchrow("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid = 1")
        base_port = await conn.fetchval("SELECT nodeport FROM pg_dist_node WHERE groupid = 0")
    finally:
        await conn.close()
    conn = await asyncpg.connect(dsn_for_node(pg_server_dsn, host, port, "postgres"))
    try:
        data = Path(await conn.fetchval("SHOW data_directory"))
    finally:
        await conn.close()
    if data.name not in ("worker1", "worker2") or not (data.parent / "coordinator").is_dir():
        pytest.skip(f"SKIPPED LOUDLY: the worker's data ({data}) is not a cluster of deploy/citus/cluster.sh")
    found = Worker(data.parent, base_port, data.name)
    yield found
    await found.start()  # whatever happened, the cluster is whole for the tests after this one


async def test_a_worker_restarted_mid_write_loses_nothing_acknowledged_and_its_outage_answers_unavailable(
    reference: Reference, make_migrated_database: Callable[[], str], worker: Worker
) -> None:
    dsn = make_migrated_database()
    started = asyncio.Event()
    # No retries in ingest: what the writer answers during the outage reaches the client, which resends.
    async with write_path(dsn, writer_retry_seconds=0) as stub:
        client = Client(stub)
        writing = asyncio.create_task(client.run(reference.batches, after_batch=lambda n: n == 3 and started.set()))
        await started.wait()
        await worker.stop()  # while the client goes on submitting
        await eventually(lambda: bool(client.failures) or writing.done(), "a submission refused with the worker down")
        assert client.failures, f"all {len(reference.batches)} batches were written before the worker stopped"
        await worker.start()
        await writing  # every batch acknowledged in the end (Client.run checks each snapshot's status)

    # Retryable, and so from the writer too (ingest answers UNAVAILABLE whatever the writer's failure was).
    assert {f.code() for f in client.failures} == {grpc.StatusCode.UNAVAILABLE}
    writer_codes = [m.group(1) if (m := re.search(r"writer \S+: (\w+):", f.details() or "")) else f.details()
                    for f in client.failures]  # fmt: skip
    assert set(writer_codes) == {"UNAVAILABLE"}, writer_codes

    # Nothing acknowledged is lost, nothing is doubled: the rows are exactly those of the uninterrupted run on plain
    # PostgreSQL, once Citus has committed what the worker had prepared when it stopped.
    found: Contents = {}

    async def as_on_plain_postgresql() -> bool:
        found.update(await contents(dsn))
        return found == reference.contents

    try:
        await eventually(as_on_plain_postgresql, "the rows of every acknowledged snapshot", within=RECOVERED_WITHIN)
    except AssertionError as exc:
        pytest.fail(f"{exc}\n{differences(reference.contents, found, names=('plain', 'citus'))}")
