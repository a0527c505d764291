"""Twilio Media Streams wire format: everything about it, and no I/O.

Both directions live here: what Twilio sends (parsed by the streaming service, built by the call
simulator) and what the service sends back (`media`, `mark`, `clear`). Parsing is strict about types
and sizes and raises `ProtocolError` with a reason a log line can carry.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from shared.audio.mulaw import FRAME_BYTES

# A 20 ms frame is 216 base64 characters; allow generous frames but nothing absurd.
MAX_MEDIA_PAYLOAD_BYTES = 16 * FRAME_BYTES
# What a server may send Twilio in one message (it buffers and plays in order): up to 8 s of audio.
MAX_OUTBOUND_PAYLOAD_BYTES = 8 * 8000
MAX_PARAMETERS = 32
MAX_PARAMETER_CHARS = 2048


class ProtocolError(ValueError):
    """A message that is not valid Media Streams JSON."""


def _dumps(message: dict[str, Any]) -> str:
    # orjson: a call is 100 of these messages a second, and stdlib json costs 10x more per message
    return orjson.dumps(message).decode()


def _loads(raw: str | bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses some JSON the standard library reads (escaped lone surrogates, NaN and Infinity): the
    # standard library judges those, as it judged every message before, so what is accepted does not depend on
    # the fast path.
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError("not JSON") from exc


@dataclass(frozen=True)
class Connected:
    protocol: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000


class Media(NamedTuple):
    """50 a second per call each way: a NamedTuple is built in C, where a frozen dataclass sets each field
    through `object.__setattr__` (2.5 us a message here, against 0.5)."""

    stream_sid: str
    payload: bytes
    timestamp_ms: int
    chunk: int
    track: str


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True)
class Stop:
    stream_sid: str
    call_sid: str


@dataclass(frozen=True)
class Clear:
    stream_sid: str


InboundMessage = Connected | Start | Media | Mark | Dtmf | Stop
OutboundMessage = Media | Mark | Clear


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be an object")
    return value


def _str(obj: dict[str, Any], key: str, what: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ProtocolError(f"{what}.{key} must be a non-empty string")
    return value


def _int_string(obj: dict[str, Any], key: str, what: str) -> int:
    # Twilio sends numbers as strings; accept ints too, reject anything else.
    value = obj.get(key, "0")
    if isinstance(value, bool):
        raise ProtocolError(f"{what}.{key} must be a number")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{what}.{key} must be a number") from exc


def _payload(obj: dict[str, Any], max_bytes: int = MAX_MEDIA_PAYLOAD_BYTES) -> bytes:
    text = _str(obj, "payload", "media", required=False)
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise ProtocolError("media.payload too large")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("media.payload is not base64") from exc


def _parameters(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    params = _obj(value, "start.customParameters")
    if len(params) > MAX_PARAMETERS:
        raise ProtocolError("too many customParameters")
    out: dict[str, str] = {}
    for key, item in params.items():
        if not isinstance(item, str) or len(item) > MAX_PARAMETER_CHARS or len(key) > 128:
            raise ProtocolError("customParameters must be short strings")
        out[key] = item
    return out


def parse_inbound(raw: str | bytes) -> InboundMessage:
    """Parse one text frame from Twilio."""
    msg = _obj(_loads(raw), "message")
    event = msg.get("event")
    if event == "connected":
        return Connected(protocol=str(msg.get("protocol", "")))
    if event == "start":
        start = _obj(msg.get("start"), "start")
        media_format = _obj(start.get("mediaFormat", {}), "start.mediaFormat")
        return Start(
            stream_sid=_str(start, "streamSid", "start"),
            call_sid=_str(start, "callSid", "start"),
            account_sid=_str(start, "accountSid", "start", required=False),
            custom_parameters=_parameters(start.get("customParameters")),
            encoding=str(media_format.get("encoding", "audio/x-mulaw")),
            sample_rate=_int_string(media_format, "sampleRate", "start.mediaFormat") or 8000,
        )
    if event == "media":
        media = _obj(msg.get("media"), "media")
        return Media(
            stream_sid=_str(msg, "streamSid", "media"),
            payload=_payload(media),
            timestamp_ms=_int_string(media, "timestamp", "media"),
            chunk=_int_string(media, "chunk", "media"),
            track=str(media.get("track", "inbound")),
        )
    if event == "mark":
        mark = _obj(msg.get("mark"), "mark")
        return Mark(stream_sid=_str(msg, "streamSid", "mark"), name=_str(mark, "name", "mark"))
    if event == "dtmf":
        dtmf = _obj(msg.get("dtmf"), "dtmf")
        digit = _str(dtmf, "digit", "dtmf")
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise ProtocolError("dtmf.digit must be one key")
        return Dtmf(stream_sid=_str(msg, "streamSid", "dtmf"), digit=digit)
    if event == "stop":
        stop = _obj(msg.get("stop", {}), "stop")
        return Stop(stream_sid=_str(msg, "streamSid", "stop"),
                    call_sid=_str(stop, "callSid", "stop", required=False))
    raise ProtocolError(f"unknown event {str(event)[:32]!r}")


# --- what the service sends ---------------------------------------------------------------------

def media_message(stream_sid: str, ulaw: bytes) -> str:
    return _dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": base64.b64encode(ulaw).decode("ascii")}})


def mark_message(stream_sid: str, name: str) -> str:
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return _dumps({"event": "clear", "streamSid": stream_sid})


def parse_outbound(raw: str | bytes) -> OutboundMessage:
    """Parse what the service sent (the simulator's side of the socket)."""
    msg = _obj(_loads(raw), "message")
    event = msg.get("event")
    stream_sid = _str(msg, "streamSid", str(event))
    if event == "media":
        return Media(stream_sid=stream_sid,
                     payload=_payload(_obj(msg.get("media"), "media"), MAX_OUTBOUND_PAYLOAD_BYTES),
                     timestamp_ms=0, chunk=0, track="outbound")
    if event == "mark":
        return Mark(stream_sid=stream_sid, name=_str(_obj(msg.get("mark"), "mark"), "name", "mark"))
    if event == "clear":
        return Clear(stream_sid=stream_sid)
    raise ProtocolError(f"unknown outbound event {str(event)[:32]!r}")


# --- what Twilio sends (used by the call simulator) ----------------------------------------------

class InboundBuilder:
    """Builds Twilio's messages for one stream with correct sequence numbers and timestamps."""

    def __init__(self, stream_sid: str, call_sid: str, account_sid: str = "AC" + "0" * 32) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self._sequence = 0
        self._chunk = 0

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def connected(self) -> str:
        return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str]) -> str:
        return _dumps({
            "event": "start", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "start": {"streamSid": self.stream_sid, "accountSid": self.account_sid,
                      "callSid": self.call_sid, "tracks": ["inbound"],
                      "customParameters": custom_parameters,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
        })

    def media(self, ulaw: bytes) -> str:
        self._chunk += 1
        timestamp = (self._chunk - 1) * 20
        return _dumps({
            "event": "media", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": str(self._chunk), "timestamp": str(timestamp),
                      "payload": base64.b64encode(ulaw).decode("ascii")},
        })

    def mark(self, name: str) -> str:
        return _dumps({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                           "mark": {"name": name}})

    def dtmf(self, digit: str) -> str:
        return _dumps({"event": "dtmf", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                           "dtmf": {"track": "inbound_track", "digit": digit}})

    def stop(self) -> str:
        return _dumps({"event": "stop", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
                           "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
