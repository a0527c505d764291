import base64
import json

import pytest

from shared import twilio_media as wire


def builder():
    return wire.InboundBuilder("MZ1", "CA1")


def test_round_trip_of_every_inbound_event():
    b = builder()
    assert isinstance(wire.parse_inbound(b.connected()), wire.Connected)
    start = wire.parse_inbound(b.start({"tenant_id": "acme", "stream_token": "t"}))
    assert isinstance(start, wire.Start)
    assert (start.call_sid, start.stream_sid, start.custom_parameters["tenant_id"]) == ("CA1", "MZ1", "acme")
    media = wire.parse_inbound(b.media(b"\xff" * 160))
    assert isinstance(media, wire.Media) and media.payload == b"\xff" * 160 and media.chunk == 1
    assert wire.parse_inbound(b.mark("s1")) == wire.Mark("MZ1", "s1")
    assert wire.parse_inbound(b.dtmf("5")) == wire.Dtmf("MZ1", "5")
    assert wire.parse_inbound(b.stop()) == wire.Stop("MZ1", "CA1")


def test_numbers_arrive_as_strings_and_sequence_increases():
    b = builder()
    first = json.loads(b.media(b"\xff" * 160))
    second = json.loads(b.media(b"\xff" * 160))
    assert first["media"]["chunk"] == "1" and second["media"]["timestamp"] == "20"
    assert int(second["sequenceNumber"]) == int(first["sequenceNumber"]) + 1


@pytest.mark.parametrize("raw, reason", [
    ("not json", "not JSON"),
    ("[]", "must be an object"),
    ('{"event": "bogus"}', "unknown event"),
    ('{"event": "media", "streamSid": "MZ", "media": {"payload": "@@@"}}', "not base64"),
    ('{"event": "media", "streamSid": "MZ", "media": "x"}', "must be an object"),
    ('{"event": "media", "media": {"payload": ""}}', "streamSid"),
    ('{"event": "start", "start": {"streamSid": "MZ"}}', "callSid"),
    ('{"event": "start", "start": {"streamSid": "MZ", "callSid": "CA", "customParameters": {"a": 1}}}',
     "short strings"),
    ('{"event": "dtmf", "streamSid": "MZ", "dtmf": {"digit": "12"}}', "one key"),
    ('{"event": "mark", "streamSid": "MZ", "mark": {"name": 5}}', "name"),
    ('{"event": "media", "streamSid": "MZ", "media": {"payload": "", "chunk": true}}', "number"),
])
def test_malformed_messages_raise_protocol_error_with_reason(raw, reason):
    with pytest.raises(wire.ProtocolError, match=reason):
        wire.parse_inbound(raw)


def test_oversized_payload_is_refused():
    payload = base64.b64encode(b"\xff" * (wire.MAX_MEDIA_PAYLOAD_BYTES + 1000)).decode()
    with pytest.raises(wire.ProtocolError, match="too large"):
        wire.parse_inbound(json.dumps({"event": "media", "streamSid": "MZ", "media": {"payload": payload}}))


def test_outbound_messages_have_the_documented_shape():
    assert json.loads(wire.media_message("MZ1", b"\xff\xff")) == {
        "event": "media", "streamSid": "MZ1", "media": {"payload": base64.b64encode(b"\xff\xff").decode()}}
    assert json.loads(wire.mark_message("MZ1", "s3")) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "s3"}}
    assert json.loads(wire.clear_message("MZ1")) == {"event": "clear", "streamSid": "MZ1"}
    assert wire.parse_outbound(wire.clear_message("MZ1")) == wire.Clear("MZ1")


def test_valid_json_the_fast_parser_refuses_is_still_parsed():
    """orjson refuses an escaped lone surrogate; the message is valid JSON, so it is judged like any other."""
    builder = wire.InboundBuilder("MZ1", "CA1")
    raw = builder.start({"tenant_id": "acme", "note": "NOTE"}).replace('"NOTE"', '"\\ud800"')
    parsed = wire.parse_inbound(raw)
    assert isinstance(parsed, wire.Start) and parsed.custom_parameters == {"tenant_id": "acme", "note": "\ud800"}


def test_nesting_too_deep_for_either_parser_is_a_protocol_error():
    with pytest.raises(wire.ProtocolError, match="not JSON"):
        wire.parse_inbound("[" * 100_000 + "]" * 100_000)
