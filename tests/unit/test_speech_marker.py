"""The marked-speech generator: webrtcvad hears speech, and the text survives any chunking."""

from __future__ import annotations

import random

import pytest
import webrtcvad

from shared.audio import mulaw
from tests.fakes.speech_marker import MarkerDecoder, find_marked_text, marked_speech, unmarked_speech

PHRASES = ["yes", "I'd like to book a table for two at seven", "ça va, 東京?", "word " * 60]


def speech_ratio(ulaw: bytes) -> float:
    vad = webrtcvad.Vad(2)
    frames = mulaw.frames(ulaw)
    return sum(vad.is_speech(mulaw.decode(f).tobytes(), mulaw.SAMPLE_RATE) for f in frames) / len(frames)


@pytest.mark.parametrize("text", PHRASES)
def test_marked_speech_is_speech_to_webrtcvad(text: str) -> None:
    audio = marked_speech(text)
    assert len(audio) % mulaw.FRAME_BYTES == 0
    assert speech_ratio(audio) >= 0.9


@pytest.mark.parametrize("text", PHRASES)
def test_text_round_trips_with_audio_around_it(text: str) -> None:
    before = mulaw.silence(137) + unmarked_speech(300)
    audio = before + marked_speech(text) + unmarked_speech(400, seed=3)
    assert find_marked_text(audio) == [(len(before), text)]


def test_duration_follows_words() -> None:
    assert mulaw.duration_ms(marked_speech("one two three four", ms_per_word=300)) == 1200


def test_incremental_decoder_survives_arbitrary_chunks() -> None:
    stream = (mulaw.silence(333) + marked_speech("first phrase") + unmarked_speech(500)
              + marked_speech("second") + mulaw.silence(100))
    rng = random.Random(7)
    decoder, found, i = MarkerDecoder(), [], 0
    while i < len(stream):
        size = rng.randint(1, 700)
        found += decoder.feed(stream[i : i + size])
        i += size
    assert [text for _, text in found] == ["first phrase", "second"]
    assert found == find_marked_text(stream)


def test_plain_audio_carries_no_text() -> None:
    assert find_marked_text(mulaw.silence(2000) + unmarked_speech(3000)) == []
    assert speech_ratio(unmarked_speech(1000)) >= 0.9


def test_corrupted_packet_is_ignored() -> None:
    audio = bytearray(marked_speech("hello world"))
    audio[60] ^= 1  # one payload bit: the CRC no longer matches
    assert find_marked_text(bytes(audio)) == []
