"""The service's log: one JSON object per line, without a line per vendor HTTP request at INFO."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.structured_logging import QUIET_AT_INFO, configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_AT_INFO}
    yield
    root.handlers[:], root.level = handlers, level
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def logged(level: str) -> list[dict[str, str]]:
    out = io.StringIO()
    configure_logging(level, out)
    logging.getLogger("httpx").info('HTTP Request: POST https://api.openai.com/v1/chat/completions "200 OK"')
    logging.getLogger("httpx2").warning("connection pool full")
    logging.getLogger("voice_agent.call").info("call started")
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_at_info_http_clients_log_only_their_warnings(restored_logging: None) -> None:
    assert [(e["logger"], e["message"]) for e in logged("INFO")] == [
        ("httpx2", "connection pool full"), ("voice_agent.call", "call started")]


def test_at_debug_every_request_is_logged(restored_logging: None) -> None:
    assert [e["logger"] for e in logged("DEBUG")] == ["httpx", "httpx2", "voice_agent.call"]
