"""The Media Streams parser against literal messages in the shape Twilio's documentation gives.

Nothing here comes from `InboundBuilder` (the simulator's side of the same module), so a mistake shared
by the builder and the parser cannot pass. The samples follow the "WebSocket Messages" page of Twilio's
Media Streams docs (copied in ../shared/reference/twilio-media-streams.md): numbers as strings except
`mediaFormat.sampleRate`, `streamSid` at the top level of every message but `connected`, `tracks` and
`channels` that the parser has no use for, the docs' own base64 media payload.
"""

from __future__ import annotations

import base64

import pytest

from shared import twilio_media as wire

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA3bc9bd2cbe1de27d2d7bbf4c3cd5d3a5"
ACCOUNT = "AC25e16e9a716a4a1786a7c83f58e30482"
DOCS_PAYLOAD = "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBwYIDRg1qZSLh4aIjJevLBUMBwYHCxIr"

CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = """{
  "event": "start",
  "sequenceNumber": "1",
  "start": {
    "accountSid": "AC25e16e9a716a4a1786a7c83f58e30482",
    "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
    "callSid": "CA3bc9bd2cbe1de27d2d7bbf4c3cd5d3a5",
    "tracks": ["inbound"],
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    "customParameters": {"tenant_id": "acme", "stream_token": "eyJ0.c2ln"}
  },
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
}"""
MEDIA = """{
  "event": "media",
  "sequenceNumber": "3",
  "media": {
    "track": "inbound",
    "chunk": "1",
    "timestamp": "5",
    "payload": "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBwYIDRg1qZSLh4aIjJevLBUMBwYHCxIr"
  },
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
}"""
MARK = """{
  "event": "mark",
  "sequenceNumber": "4",
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
  "mark": {"name": "my label"}
}"""
DTMF = """{
  "event": "dtmf",
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
  "sequenceNumber": "5",
  "dtmf": {"track": "inbound_track", "digit": "1"}
}"""
STOP = """{
  "event": "stop",
  "sequenceNumber": "5",
  "stop": {
    "accountSid": "AC25e16e9a716a4a1786a7c83f58e30482",
    "callSid": "CA3bc9bd2cbe1de27d2d7bbf4c3cd5d3a5"
  },
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
}"""


def test_connected() -> None:
    assert wire.parse_inbound(CONNECTED) == wire.Connected(protocol="Call")


def test_start_carries_the_stream_call_account_and_custom_parameters() -> None:
    assert wire.parse_inbound(START) == wire.Start(
        stream_sid=STREAM, call_sid=CALL, account_sid=ACCOUNT,
        custom_parameters={"tenant_id": "acme", "stream_token": "eyJ0.c2ln"},
        encoding="audio/x-mulaw", sample_rate=8000)


def test_start_without_custom_parameters_or_media_format_takes_the_defaults() -> None:
    raw = ('{"event": "start", "sequenceNumber": "1", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0", '
           '"start": {"accountSid": "AC25e16e9a716a4a1786a7c83f58e30482", '
           '"streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0", "callSid": "CA3bc9bd2cbe1de27d2d7bbf4c3cd5d3a5", '
           '"tracks": ["inbound"]}}')
    start = wire.parse_inbound(raw)
    assert isinstance(start, wire.Start)
    assert (start.custom_parameters, start.encoding, start.sample_rate) == ({}, "audio/x-mulaw", 8000)


def test_media_numbers_arrive_as_strings_and_the_payload_is_the_docs_bytes() -> None:
    media = wire.parse_inbound(MEDIA)
    assert media == wire.Media(stream_sid=STREAM, payload=base64.b64decode(DOCS_PAYLOAD), timestamp_ms=5,
                               chunk=1, track="inbound")
    assert len(media.payload) == 54


def test_mark_echo() -> None:
    assert wire.parse_inbound(MARK) == wire.Mark(stream_sid=STREAM, name="my label")


def test_dtmf() -> None:
    assert wire.parse_inbound(DTMF) == wire.Dtmf(stream_sid=STREAM, digit="1")


def test_stop() -> None:
    assert wire.parse_inbound(STOP) == wire.Stop(stream_sid=STREAM, call_sid=CALL)


def test_bytes_frames_parse_like_text() -> None:
    assert wire.parse_inbound(MARK.encode()) == wire.parse_inbound(MARK)


def test_a_twenty_ms_frame_of_silence_is_216_base64_characters() -> None:
    payload = "/" * 212 + "/w=="  # 160 bytes of 0xFF: mu-law silence
    media = wire.parse_inbound(MEDIA.replace(DOCS_PAYLOAD, payload))
    assert isinstance(media, wire.Media)
    assert len(payload) == 216 and media.payload == b"\xff" * 160


@pytest.mark.parametrize("raw, reason", [
    (MEDIA.replace('"chunk": "1"', '"chunk": "one"'), "media.chunk must be a number"),
    (MEDIA.replace('"timestamp": "5"', '"timestamp": true'), "media.timestamp must be a number"),
    (MEDIA.replace(DOCS_PAYLOAD, DOCS_PAYLOAD[:-1]), "media.payload is not base64"),
    (MEDIA.replace('"streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"', '"streamSid": ""'),
     "media.streamSid must be a non-empty string"),
    (MARK.replace('"my label"', '""'), "mark.name must be a non-empty string"),
    (DTMF.replace('"digit": "1"', '"digit": "12"'), "dtmf.digit must be one key"),
    (DTMF.replace('"digit": "1"', '"digit": "E"'), "dtmf.digit must be one key"),
    (START.replace('"callSid": "CA3bc9bd2cbe1de27d2d7bbf4c3cd5d3a5",', ""), "start.callSid must be"),
    (START.replace('"sampleRate": 8000', '"sampleRate": "8k"'), "start.mediaFormat.sampleRate must be"),
    (START.replace('"acme"', "42"), "customParameters must be short strings"),
    (CONNECTED.replace("connected", "connectd"), "unknown event 'connectd'"),
    ("[" + STOP + "]", "message must be an object"),
    (STOP[:-3], "not JSON"),
])
def test_a_sample_spoiled_in_one_place_is_refused_with_its_reason(raw: str, reason: str) -> None:
    with pytest.raises(wire.ProtocolError, match=reason):
        wire.parse_inbound(raw)


def test_outbound_messages_match_the_documented_shapes() -> None:
    """The three messages the service sends, compared with the docs' JSON (parsed, so key order is free)."""
    import json

    assert json.loads(wire.media_message(STREAM, base64.b64decode(DOCS_PAYLOAD))) == json.loads(
        '{"event": "media", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0", "media": {"payload": '
        '"no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBwYIDRg1qZSLh4aIjJevLBUMBwYHCxIr"}}')
    assert json.loads(wire.mark_message(STREAM, "sentence-3")) == json.loads(
        '{"event": "mark", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0", "mark": {"name": "sentence-3"}}')
    assert json.loads(wire.clear_message(STREAM)) == json.loads(
        '{"event": "clear", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"}')


# --- limits, at their edges (derived from the samples above) ------------------------------------------

LARGEST = base64.b64encode(b"\xff" * wire.MAX_MEDIA_PAYLOAD_BYTES).decode()  # 16 frames: 3416 characters


def test_the_largest_payload_is_accepted_and_the_size_check_leaves_base64_slack() -> None:
    media = wire.parse_inbound(MEDIA.replace(DOCS_PAYLOAD, LARGEST))
    assert isinstance(media, wire.Media) and len(media.payload) == wire.MAX_MEDIA_PAYLOAD_BYTES
    # One character more is still judged by its content, not refused for size; two more are too large.
    with pytest.raises(wire.ProtocolError, match="not base64"):
        wire.parse_inbound(MEDIA.replace(DOCS_PAYLOAD, LARGEST + "A"))
    with pytest.raises(wire.ProtocolError, match="too large"):
        wire.parse_inbound(MEDIA.replace(DOCS_PAYLOAD, LARGEST + "AA"))


def _start_with(parameters: dict[str, str]) -> str:
    import json

    message = json.loads(START)
    message["start"]["customParameters"] = parameters
    return json.dumps(message)


def test_custom_parameters_up_to_the_limits_are_accepted_and_one_more_is_not() -> None:
    most = {f"p{i}": "v" for i in range(wire.MAX_PARAMETERS)}
    start = wire.parse_inbound(_start_with(most))
    assert isinstance(start, wire.Start) and start.custom_parameters == most
    with pytest.raises(wire.ProtocolError, match="too many customParameters"):
        wire.parse_inbound(_start_with(most | {"one_more": "v"}))
    longest = {"k" * 128: "v" * wire.MAX_PARAMETER_CHARS}
    start = wire.parse_inbound(_start_with(longest))
    assert isinstance(start, wire.Start) and start.custom_parameters == longest
    for too_long in ({"k" * 129: "v"}, {"k": "v" * (wire.MAX_PARAMETER_CHARS + 1)}):
        with pytest.raises(wire.ProtocolError, match="customParameters must be short strings"):
            wire.parse_inbound(_start_with(too_long))


def test_stop_without_its_call_sid_is_still_a_stop() -> None:
    stop = wire.parse_inbound('{"event": "stop", "sequenceNumber": "5", '
                              '"streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0", "stop": {}}')
    assert stop == wire.Stop(stream_sid=STREAM, call_sid="")


def test_an_unknown_event_name_is_cut_to_32_characters_in_the_reason() -> None:
    """The reason goes into a log line: a hostile event name must not flood it."""
    name = "x" * 32 + "TAIL"
    with pytest.raises(wire.ProtocolError) as refused:
        wire.parse_inbound(CONNECTED.replace("connected", name))
    assert str(refused.value) == f"unknown event {'x' * 32!r}"
