"""The deployed services as child processes: started as `python -m services.<name>.main`, always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oddstore import tls

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
REPO_ROOT = Path(__file__).resolve().parent.parent


class ServiceFailed(RuntimeError):
    """A child service exited or never became healthy."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the benchmark is killed outright (SIGKILL, OOM), the
    # kernel kills the service too, so no orphan keeps writing into a database we are about to drop.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ServiceProcess:
    def __init__(self, name: str, module: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=REPO_ROOT,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        logger.info("started %s (pid %d): python -m %s", name, self.process.pid, module)

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ServiceFailed(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    def status_kib(self, field: str) -> int:
        """A 'kB' field of /proc/<pid>/status, e.g. VmHWM (peak resident set)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise ServiceFailed(f"{field} not in /proc/{self.pid}/status")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0fs: killing it", self.name, grace)
                self.process.kill()
                self.process.wait()
        logger.info("%s stopped (exit code %s)", self.name, self.process.returncode)


async def wait_serving(
    service: ServiceProcess, port: int, within: float = 90.0, files: tls.TlsFiles = tls.PLAINTEXT
) -> None:
    """Polls the standard gRPC health service until the server reports SERVING (over TLS with `files`)."""
    deadline = time.monotonic() + within
    async with tls.channel(f"127.0.0.1:{port}", files) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            service.check_alive()
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    logger.info("%s is SERVING on port %d", service.name, port)
                    return
            if time.monotonic() > deadline:
                raise ServiceFailed(f"{service.name} not SERVING after {within:.0f}s:\n{service.log_tail()}")
            await asyncio.sleep(0.2)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


async def scrape_gauge(port: int, name: str) -> float:
    """One unlabelled sample from a Prometheus /metrics endpoint."""
    text = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{port}/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise ServiceFailed(f"metric {name} not found on :{port}/metrics")
