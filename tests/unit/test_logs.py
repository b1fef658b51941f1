"""JSON logs: one object per line with the record's own fields and whatever was passed in `extra=`."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from oddstore.logs import json_formatter


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter("writer"))
    logger = logging.getLogger("tests.unit.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_carries_its_level_logger_message_service_and_extra_fields(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    at = datetime(2026, 2, 24, 10, tzinfo=UTC)
    logger.warning("writer %s %s", "w1", "UNAVAILABLE", extra={"batch_size": 3, "captured_at": at})
    (entry,) = lines(stream)
    assert entry["level"] == "WARNING" and entry["logger"] == "tests.unit.test_logs"
    assert entry["message"] == "writer w1 UNAVAILABLE" and entry["service"] == "writer"
    assert entry["batch_size"] == 3 and entry["captured_at"] == at.isoformat()
    assert datetime.fromisoformat(entry["ts"]).tzinfo is not None


def test_an_exception_is_one_field_of_the_same_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise RuntimeError("lost the connection")
    except RuntimeError:
        logger.exception("feed reload failed")
    (entry,) = lines(stream)
    assert entry["message"] == "feed reload failed"
    assert "Traceback" in entry["exc"] and "RuntimeError: lost the connection" in entry["exc"]
