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
