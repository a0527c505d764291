"""A tenant's toolbox: the HTTP tools its agent may call through the tool proxy.

Stored as JSON with the tenant's settings and validated here on upload (and again when the proxy
loads it, so a row edited by hand cannot smuggle in a malformed tool). Shape:

    {"tools": [{                 (tenant settings store just the list)
        "name": "order_status",
        "description": "Look up an order by its number.",
        "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                         "required": ["order_id"]},
        "target": {"method": "GET",
                   "url": "https://api.example.com/orders/{{order_id}}",
                   "headers": {"Authorization": "Bearer {{secret:ORDERS_API_KEY}}"}}
    }]}

URL templates take `{{argument}}` placeholders (percent-encoded when rendered); headers may also take
`{{secret:NAME}}` references, resolved by the proxy at call time. Secrets are allowed in headers only:
URLs end up in logs and in other people's access logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SECRET_REF = re.compile(r"\{\{\s*secret:([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_REF = re.compile(r"\{\{\s*(?:secret:([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))\s*\}\}")
MAX_TOOLS = 64

TOOLBOX_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["tools"],
    "properties": {
        "version": {"const": 1},
        "tools": {
            "type": "array",
            "maxItems": MAX_TOOLS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "description", "input_schema", "target"],
                "properties": {
                    "name": {"type": "string", "pattern": _NAME},
                    "description": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "input_schema": {"type": "object"},
                    "target": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["method", "url"],
                        "properties": {
                            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                            "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
                            "headers": {
                                "type": "object",
                                "maxProperties": 32,
                                "additionalProperties": {"type": "string", "maxLength": 4096},
                            },
                        },
                    },
                },
            },
        },
    },
}


class ToolboxError(ValueError):
    """The toolbox JSON does not describe a usable set of tools; the message says where."""


@dataclass(frozen=True)
class HttpTarget:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)

    def url_placeholders(self) -> list[str]:
        return _PLACEHOLDER.findall(self.url)

    def secret_names(self) -> set[str]:
        return {name for value in self.headers.values() for name in _SECRET_REF.findall(value)}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]
    target: HttpTarget


@dataclass(frozen=True)
class Toolbox:
    tools: tuple[ToolSpec, ...] = ()

    def get(self, name: str) -> ToolSpec | None:
        return next((tool for tool in self.tools if tool.name == name), None)


def validate_toolbox(obj: Any) -> Toolbox:
    """Check a decoded toolbox.json and return it typed, or raise ToolboxError.

    Accepts the document (`{"tools": [...]}`) or its bare tool list, which is how tenant settings
    store it (a JSON array column).
    """
    # jsonschema costs ~90 ms to import; only uploads and the proxy's first load pay for it.
    import jsonschema

    if isinstance(obj, list):
        obj = {"tools": obj}

    validator = jsonschema.Draft202012Validator(TOOLBOX_SCHEMA)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path) or "(root)"
        raise ToolboxError(f"{where}: {first.message}")
    tools: list[ToolSpec] = []
    for index, raw in enumerate(obj["tools"]):
        name = raw["name"]
        if any(tool.name == name for tool in tools):
            raise ToolboxError(f"tools/{index}/name: duplicate tool name {name!r}")
        schema = raw["input_schema"]
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ToolboxError(f"tools/{index}/input_schema: {exc.message}") from exc
        if schema.get("type") != "object":
            raise ToolboxError(f"tools/{index}/input_schema: must describe an object (\"type\": \"object\")")
        raw_target = raw["target"]
        target = HttpTarget(method=raw_target["method"], url=raw_target["url"],
                            headers=dict(raw_target.get("headers", {})))
        if _SECRET_REF.search(target.url):
            raise ToolboxError(f"tools/{index}/target/url: secrets are allowed in headers only")
        declared = set(schema.get("properties", {}))
        missing = [p for p in target.url_placeholders() if p not in declared]
        if missing:
            raise ToolboxError(f"tools/{index}/target/url: placeholders not in input_schema: {missing}")
        tools.append(ToolSpec(name=name, description=raw["description"], input_schema=schema,
                              target=target))
    return Toolbox(tools=tuple(tools))


def render_url(template: str, arguments: dict[str, Any]) -> str:
    """Fill `{{arg}}` placeholders, percent-encoding each value so it stays inside its path segment."""
    from urllib.parse import quote

    return _PLACEHOLDER.sub(lambda m: quote(str(arguments.get(m.group(1), "")), safe=""), template)


def render_header(template: str, secrets: dict[str, str], arguments: dict[str, Any]) -> str:
    """Fill `{{secret:NAME}}` and `{{arg}}` in one pass, so neither value can inject the other form."""

    def fill(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return secrets[match.group(1)]
        return str(arguments.get(match.group(2), ""))

    return _ANY_REF.sub(fill, template)
