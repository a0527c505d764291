"""How Deepgram results become transcript events (the SDK's own message models, no socket)."""

from __future__ import annotations

from deepgram.listen.v1.types import ListenV1Results

from shared.settings import Settings
from streaming_service.engines.base import TranscriptEvent, TranscriptKind
from streaming_service.engines.deepgram_stt import DeepgramStream, DeepgramStreamOptions


def results(transcript: str, *, is_final: bool, speech_final: bool, start: float = 0.0) -> ListenV1Results:
    return ListenV1Results.model_validate({
        "type": "Results", "channel_index": [0, 1], "start": start, "duration": 0.5, "is_final": is_final,
        "speech_final": speech_final, "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.9,
                                                                    "words": []}]},
        "metadata": {"request_id": "r1", "model_uuid": "m1", "model_info": {"name": "n", "version": "v", "arch": "a"}}})


def events_of(*messages: ListenV1Results) -> list[TranscriptEvent]:
    stream = DeepgramStream(client=None, settings=Settings(_env_file=None),  # type: ignore[arg-type,call-arg]
                            options=DeepgramStreamOptions(), call_sid="CA1")
    for message in messages:
        stream._on_results(message)
    out = []
    while not stream._events.empty():
        out.append(stream._events.get_nowait())
    return out


def test_an_empty_speech_final_after_a_final_piece_still_ends_the_turn():
    events = events_of(results("book a haircut", is_final=True, speech_final=False),
                       results("", is_final=True, speech_final=True, start=0.5))
    assert [(e.kind, e.text, e.speech_final) for e in events] == [
        (TranscriptKind.FINAL, "book a haircut", False), (TranscriptKind.FINAL, "", True)]


def test_empty_finals_without_speech_final_are_dropped():
    assert events_of(results("", is_final=True, speech_final=False)) == []


RESULTS = {
    "type": "Results", "channel_index": [0, 1], "start": 1.0, "duration": 0.2, "is_final": False,
    "speech_final": False, "from_finalize": False,
    "channel": {"alternatives": [{"transcript": "book a", "confidence": 0.98, "words": [
        {"word": "book", "start": 1.0, "end": 1.1, "confidence": 0.9, "punctuated_word": "Book"},
        {"word": "a", "start": 1.1, "end": 1.2, "confidence": 0.9, "punctuated_word": "a"}]}]},
    "metadata": {"request_id": "r1", "model_uuid": "m1", "model_info": {"name": "n", "version": "v", "arch": "a"}}}


def sdk_built(message: dict[str, object], union: object = None) -> object:
    """What the SDK's own `async for` yields for this message."""
    from deepgram.core.unchecked_base_model import construct_type
    from deepgram.listen.v1.socket_client import V1SocketClientResponse

    return construct_type(type_=union or V1SocketClientResponse, object_=message)


def test_messages_are_the_sdks_own_models_validated_by_their_type():
    import json

    from deepgram.listen.v1.socket_client import V1SocketClientResponse
    from deepgram.listen.v1.types import ListenV1SpeechStarted, ListenV1UtteranceEnd
    from deepgram.listen.v2.socket_client import V2SocketClientResponse
    from deepgram.listen.v2.types import ListenV2TurnInfo

    from streaming_service.engines.deepgram_socket import _sdk_message

    results_message = _sdk_message(json.dumps(RESULTS), V1SocketClientResponse)
    assert isinstance(results_message, ListenV1Results) and results_message == sdk_built(RESULTS)
    assert results_message.channel.alternatives[0].words[0].punctuated_word == "Book"
    started = {"type": "SpeechStarted", "channel": [0, 1], "timestamp": 1.5}
    assert isinstance(_sdk_message(json.dumps(started), V1SocketClientResponse), ListenV1SpeechStarted)
    ended = {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 2.0}
    assert isinstance(_sdk_message(json.dumps(ended), V1SocketClientResponse), ListenV1UtteranceEnd)
    turn = {"type": "TurnInfo", "request_id": "r", "sequence_id": 1, "event": "Update", "turn_index": 0,
            "audio_window_start": 0.0, "audio_window_end": 1.0, "transcript": "hello", "words": [],
            "end_of_turn_confidence": 0.2}
    assert isinstance(_sdk_message(json.dumps(turn), V2SocketClientResponse), ListenV2TurnInfo)


def test_a_message_off_the_documented_shape_is_built_as_the_sdk_builds_it_and_junk_is_skipped(caplog):
    import json

    from deepgram.listen.v1.socket_client import V1SocketClientResponse

    from streaming_service.engines.deepgram_socket import _sdk_message

    loose = {**RESULTS, "start": "soon"}  # does not validate: the SDK's lenient construction still reads it
    del loose["metadata"]
    built = _sdk_message(json.dumps(loose), V1SocketClientResponse)
    assert built == sdk_built(loose) and built.channel.alternatives[0].transcript == "book a"
    assert _sdk_message("not json {", V1SocketClientResponse) is None
    assert "deepgram message skipped" in caplog.text
