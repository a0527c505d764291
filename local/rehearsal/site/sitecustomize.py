"""Loaded by every process the rehearsal starts (Lambdas, the task): the platform's network, locally.

- `REHEARSAL_HOSTS` ({"host": "127.77.0.N"}): DNS for the AWS names in the templates (the API, the load
  balancer, the database and cache endpoints, the vendors): each name gets an address of its own.
- `REHEARSAL_SOCKETS` ({"ip:port": "ip:port"}): where those addresses' ports really listen, and the task's
  own network namespace (a bind to the container port, connects to task-local sidecars).
- `REHEARSAL_ISOLATE=1`: imports come only from the asset or image folder and site-packages, never from
  the repository's editable install, so a module missing from an asset fails here as it would in AWS.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any


def _pairs(variable: str) -> dict[tuple[str, int], tuple[str, int]]:
    raw = json.loads(os.environ.get(variable) or "{}")
    out: dict[tuple[str, int], tuple[str, int]] = {}
    for source, target in raw.items():
        host, port = source.rsplit(":", 1)
        to_host, to_port = target.rsplit(":", 1)
        out[(host.lower(), int(port))] = (to_host, int(to_port))
    return out


_HOSTS: dict[str, str] = {k.lower(): v for k, v in json.loads(os.environ.get("REHEARSAL_HOSTS") or "{}").items()}
_SOCKETS = _pairs("REHEARSAL_SOCKETS")


def _mapped(table: dict[tuple[str, int], tuple[str, int]], address: Any) -> Any:
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        target = table.get((str(address[0]).lower(), address[1]))
        if target is not None:
            return (target[0], target[1], *address[2:]) if len(address) > 2 else target
    return address


def _name(host: Any) -> Any:
    # anyio (httpx's async path) passes the IDNA-encoded name as bytes.
    return host.decode("ascii", "replace") if isinstance(host, bytes) else host


def _address(host: Any) -> str | None:
    """The local address standing in for an AWS name, or None for any other host."""
    name = _name(host)
    return _HOSTS.get(name.lower()) if isinstance(name, str) else None


if _HOSTS:
    _getaddrinfo = socket.getaddrinfo

    def _rehearsal_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
        address = _address(host)
        if address is None:
            return _getaddrinfo(host, port, family, type, proto, flags)
        return _getaddrinfo(address, port, socket.AF_INET, type, proto, flags)

    socket.getaddrinfo = _rehearsal_getaddrinfo

if _SOCKETS:
    _bind, _connect, _connect_ex = socket.socket.bind, socket.socket.connect, socket.socket.connect_ex

    def _rehearsal_bind(self, address):  # type: ignore[no-untyped-def]
        return _bind(self, _mapped(_SOCKETS, address))

    def _rehearsal_connect(self, address):  # type: ignore[no-untyped-def]
        return _connect(self, _mapped(_SOCKETS, address))

    def _rehearsal_connect_ex(self, address):  # type: ignore[no-untyped-def]
        return _connect_ex(self, _mapped(_SOCKETS, address))

    socket.socket.bind = _rehearsal_bind  # type: ignore[method-assign]
    socket.socket.connect = _rehearsal_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _rehearsal_connect_ex  # type: ignore[method-assign]


def _uvloop_platform() -> None:
    """The task runs on uvloop, which resolves, binds and connects in libuv, past the socket functions above:
    its loop gets the same names and ports (its own methods, wrapped, as the socket module's are)."""
    try:
        import uvloop
    except ImportError:
        return
    loop = uvloop.Loop
    create_connection, create_server, getaddrinfo = loop.create_connection, loop.create_server, loop.getaddrinfo

    def target(host: Any, port: Any) -> tuple[Any, Any]:
        address = _address(host) or _name(host)
        return _mapped(_SOCKETS, (address, port)) if isinstance(port, int) else (address, port)

    async def _create_connection(self, factory, host=None, port=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host is not None:
            if kwargs.get("ssl") and not kwargs.get("server_hostname"):
                kwargs["server_hostname"] = host  # the certificate names the AWS host, not the local port
            host, port = target(host, port)
        return await create_connection(self, factory, host, port, *args, **kwargs)

    async def _create_server(self, factory, host=None, port=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(host, str):
            host, port = target(host, port)
        return await create_server(self, factory, host, port, *args, **kwargs)

    async def _getaddrinfo(self, host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        return await getaddrinfo(self, target(host, None)[0], port, *args, **kwargs)

    loop.create_connection = _create_connection  # type: ignore[method-assign,assignment]
    loop.create_server = _create_server  # type: ignore[method-assign,assignment]
    loop.getaddrinfo = _getaddrinfo  # type: ignore[method-assign]


if _HOSTS or _SOCKETS:
    _uvloop_platform()

if os.environ.get("REHEARSAL_ISOLATE") == "1":
    # setuptools' editable install maps the repository's packages through a meta-path finder.
    sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")]
    _here = os.path.dirname(os.path.abspath(__file__))
    _repo = os.environ.get("REHEARSAL_REPO_ROOT", "")
    sys.path[:] = [p for p in sys.path
                   if p and "__editable__" not in p and os.path.abspath(p) not in (_here, _repo)]
