"""The tool proxy's logic: which tools a tenant has, and calling one of them safely.

Knows nothing of MCP or Lambda: `mcp_server.py` maps these results onto MCP types, `handler.py` onto
Lambda. Every failure becomes a `ToolResult(is_error=True)` with a reason the agent can relay; nothing
here raises to the transport.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from functions.tool_proxy.egress import EgressFailed, EgressPolicy, EgressRefused, send
from shared.toolbox import Toolbox, ToolSpec, render_header, render_url

log = logging.getLogger(__name__)

# Methods whose arguments travel in the query string rather than a JSON body.
_QUERY_METHODS = {"GET", "DELETE"}
_MAX_ERROR_BODY_CHARS = 512


class ToolboxSource(Protocol):
    """Where a tenant's validated toolbox comes from (tenant settings, cached)."""

    async def toolbox_for(self, tenant_id: str) -> Toolbox | None: ...


class ToolSecrets(Protocol):
    """Resolves `{{secret:NAME}}` references for one tenant; absent names are simply left out."""

    async def secrets_for(self, tenant_id: str, names: set[str]) -> dict[str, str]: ...


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False
    structured: dict[str, Any] | None = None


@dataclass(frozen=True)
class CallRecord:
    """What is logged (and counted) for each call. Never holds arguments, headers or secrets."""

    tenant_id: str
    tool: str
    outcome: str  # ok | unknown_tool | bad_arguments | refused | failed | http_error | no_secret
    duration_ms: float
    http_status: int | None = None


class ToolProxy:
    def __init__(self, toolboxes: ToolboxSource, secrets: ToolSecrets, policy: EgressPolicy,
                 observer: Callable[[CallRecord], None] | None = None) -> None:
        self._toolboxes = toolboxes
        self._secrets = secrets
        self._policy = policy
        self._observer = observer

    async def list_tools(self, tenant_id: str) -> list[ToolSpec]:
        toolbox = await self._toolboxes.toolbox_for(tenant_id)
        return list(toolbox.tools) if toolbox else []

    async def call_tool(self, tenant_id: str, name: str, arguments: dict[str, Any] | None) -> ToolResult:
        started = time.perf_counter()
        outcome, status, result = await self._call(tenant_id, name, arguments or {})
        record = CallRecord(tenant_id=tenant_id, tool=name, outcome=outcome, http_status=status,
                            duration_ms=round((time.perf_counter() - started) * 1000, 1))
        log.info("tool call", extra={"tenant_id": record.tenant_id, "tool": record.tool,
                                     "outcome": record.outcome, "http_status": record.http_status,
                                     "duration_ms": record.duration_ms})
        if self._observer is not None:
            self._observer(record)
        return result

    async def _call(self, tenant_id: str, name: str,
                    arguments: dict[str, Any]) -> tuple[str, int | None, ToolResult]:
        try:
            toolbox = await self._toolboxes.toolbox_for(tenant_id)
        except Exception as exc:  # tenant settings unreachable (DB and cache down)
            return "failed", None, ToolResult(f"Tools are unavailable: {type(exc).__name__}", is_error=True)
        tool = toolbox.get(name) if toolbox else None
        if tool is None:
            return "unknown_tool", None, ToolResult(f"Unknown tool: {name}", is_error=True)
        problem = argument_problem(tool, arguments)
        if problem is not None:
            return "bad_arguments", None, ToolResult(f"Invalid arguments: {problem}", is_error=True)
        wanted = tool.target.secret_names()
        secrets = await self._secrets.secrets_for(tenant_id, wanted) if wanted else {}
        missing = sorted(wanted - secrets.keys())
        if missing:
            return "no_secret", None, ToolResult(f"Tool is misconfigured: secret {missing[0]} is not set",
                                                 is_error=True)
        method = tool.target.method
        url = render_url(tool.target.url, arguments)
        headers = {key: render_header(value, secrets, arguments) for key, value in tool.target.headers.items()}
        rest = {k: v for k, v in arguments.items() if k not in set(tool.target.url_placeholders())}
        query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in rest.items()} \
            if method in _QUERY_METHODS else None
        body = rest if method not in _QUERY_METHODS else None
        try:
            response = await send(method, url, headers, body, query, self._policy)
        except EgressRefused as exc:
            return "refused", None, ToolResult(f"Target refused: {exc}", is_error=True)
        except EgressFailed as exc:
            return "failed", None, ToolResult(f"Tool call failed: {exc}", is_error=True)
        text = response.body.decode("utf-8", errors="replace")
        if response.status >= 400:
            return "http_error", response.status, ToolResult(
                f"Target answered HTTP {response.status}: {text[:_MAX_ERROR_BODY_CHARS]}", is_error=True)
        return "ok", response.status, ToolResult(text, structured=_json_object(response.content_type, text))


def argument_problem(tool: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """The first schema violation in the arguments, phrased with its location, or None."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(tool.input_schema)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    where = "/".join(str(part) for part in errors[0].absolute_path)
    return f"{where}: {errors[0].message}" if where else errors[0].message


def _json_object(content_type: str, text: str) -> dict[str, Any] | None:
    if "json" not in content_type:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
