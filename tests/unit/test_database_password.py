"""DATABASE_PASSWORD_FILE: read once into the settings, trailing line breaks dropped; a missing, unreadable or empty
file fails at start-up naming the variable, never showing a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from oddstore import db, migrate
from services.query.config import QuerySettings
from services.retention.config import RetentionSettings
from services.writer.config import WriterSettings

URL_WITH_SECRET = "postgresql://postgres:url-secret@db.example:5432/oddstore"


@pytest.fixture(autouse=True)
def no_database_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("content", ["s3cret: p@ss%w/rd", "s3cret: p@ss%w/rd\n", "s3cret: p@ss%w/rd\n\n"])
def test_the_password_is_the_files_content_without_its_trailing_line_breaks(tmp_path: Path, content: str) -> None:
    path = tmp_path / "database.password"
    path.write_text(content)

    assert db.read_password(path) == "s3cret: p@ss%w/rd"


@pytest.mark.parametrize("settings_class", [WriterSettings, QuerySettings, RetentionSettings])
def test_every_database_service_reads_the_password_file_named_in_the_environment_once_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_class: type[WriterSettings]
) -> None:
    path = tmp_path / "database.password"
    path.write_text("from-the-file\n")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(path))

    settings = settings_class()
    path.unlink()  # read at start-up: what happens to the file later changes nothing

    assert settings.database_password == "from-the-file"
    assert "from-the-file" not in repr(settings) and "from-the-file" not in settings.model_dump_json()


def test_without_the_variable_there_is_no_password_and_the_url_decides_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert WriterSettings().database_password is None
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", "")
    assert WriterSettings().database_password is None
    assert db.password_from_environment({}) is None
    assert db.password_from_environment({"DATABASE_PASSWORD_FILE": ""}) is None


def _unusable(directory: Path, kind: str) -> Path:
    if kind == "missing":
        return directory / "missing"
    if kind == "a directory":  # unreadable as a file; chmod 000 would not stop root, who runs the tests here
        return directory
    path = directory / "database.password"
    path.write_bytes(b"\n" if kind == "empty" else b"caf\xe9")
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "No such file or directory"),
        ("a directory", "Is a directory"),
        ("empty", "is empty"),
        ("not UTF-8", "UnicodeDecodeError"),
    ],
)
def test_a_file_that_cannot_be_used_fails_at_start_naming_the_variable_and_the_file_but_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, reason: str
) -> None:
    path = _unusable(tmp_path, kind)
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(path))
    monkeypatch.setenv("DATABASE_URL", URL_WITH_SECRET)

    with pytest.raises(db.DatabasePasswordError) as raised:
        WriterSettings()

    message = str(raised.value)
    assert message.startswith(f"DATABASE_PASSWORD_FILE={path}: ") and reason in message, message
    assert "url-secret" not in message


def test_the_migrations_command_refuses_an_unusable_password_file_with_the_variables_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("DATABASE_URL", URL_WITH_SECRET)

    assert migrate.main(["upgrade"]) == 2

    err = capsys.readouterr().err
    assert "migrate: DATABASE_PASSWORD_FILE=" in err and "No such file" in err and "url-secret" not in err
