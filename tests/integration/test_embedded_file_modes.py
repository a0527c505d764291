"""Files that hold call content are private: the embedded Redis (its dump holds call history and buffered
transcripts) and PostgreSQL keep their data in 0700 folders, the Redis dump is 0600, and the local secrets
file is 0600. (The data folder itself stays traversable: run as root, the embedded PostgreSQL runs as its
own user, which must reach its data directory.)"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from local.stack import local_secrets
from shared.settings import Settings
from shared.tenancy.embedded import start_embedded_postgres, start_embedded_redis


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)  # as a checkout or an older run left it
    return folder


@pytest.fixture
def embedded_redis(data_folder: Path) -> Iterator[redis.Redis]:
    (data_folder / "redis").mkdir()
    (data_folder / "redis").chmod(0o755)  # as an older version left it
    client = redis.Redis.from_url(start_embedded_redis(data_folder / "redis"))
    yield client
    with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it stops
        client.shutdown(nosave=True)
    client.close()


def test_embedded_redis_dump_is_private(embedded_redis: redis.Redis, data_folder: Path) -> None:
    embedded_redis.set("va:t:x:call:CA1:turns", "the caller's words")
    embedded_redis.save()
    dump = data_folder / "redis" / "dump.rdb"
    assert dump.exists()
    assert (oct(mode(data_folder / "redis")), oct(mode(dump))) == ("0o700", "0o600")


def test_embedded_postgres_data_is_private(data_folder: Path) -> None:
    start_embedded_postgres(data_folder / "postgres")  # stopped when the test process exits
    assert mode(data_folder / "postgres") == 0o700
    assert not [p for p in (data_folder / "postgres" / "base").rglob("*") if mode(p) & 0o077]


def test_local_secrets_are_private(data_folder: Path) -> None:
    local_secrets(Settings(_env_file=None), data_folder)  # type: ignore[call-arg]
    assert mode(data_folder / "local-secrets.json") == 0o600
