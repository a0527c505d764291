"""Barge-in detection: speech for min_speech_ms confirms; clicks and short bursts don't."""

import numpy as np

from shared.audio import mulaw
from streaming_service.voice_activity import CallerSpeechDetector


def voiced(ms, f0=140.0, seed=0):
    """A vowel-like harmonic signal webrtcvad treats as speech."""
    t = np.arange(ms * 8) / 8000
    rng = np.random.default_rng(seed)
    signal = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return mulaw.encode((signal * envelope * 3000).astype(np.int16))


def feed(detector, audio, start=0.0):
    events = []
    for i in range(0, len(audio), 160):
        events.append(detector.process(audio[i:i + 160], now=start + i / 8000))
    return events


def test_speech_is_confirmed_after_min_duration_once():
    d = CallerSpeechDetector(aggressiveness=2, min_speech_ms=200)
    events = feed(d, voiced(600))
    confirmed = [i for i, e in enumerate(events) if e.speech_confirmed]
    assert len(confirmed) == 1
    assert 9 <= confirmed[0] <= 14  # ~200 ms of 20 ms frames
    assert d.speaking


def test_short_burst_and_silence_never_confirm():
    d = CallerSpeechDetector(aggressiveness=2, min_speech_ms=200)
    events = feed(d, voiced(100) + mulaw.silence(400) + voiced(100) + mulaw.silence(400))
    assert not any(e.speech_confirmed for e in events)


def test_speech_end_is_reported_after_trailing_silence():
    d = CallerSpeechDetector(aggressiveness=2, min_speech_ms=200, end_silence_ms=300)
    events = feed(d, voiced(500) + mulaw.silence(600))
    assert any(e.speech_ended for e in events)
    assert not d.speaking
    assert d.last_voiced_at is not None and d.last_voiced_at < 0.6


def test_odd_sized_input_is_reframed():
    d = CallerSpeechDetector(min_speech_ms=200)
    audio = voiced(600)
    events = [d.process(audio[i:i + 97], now=i / 8000) for i in range(0, len(audio), 97)]
    assert sum(e.speech_confirmed for e in events) == 1



def test_whole_frames_and_odd_chunks_give_the_same_updates():
    audio = mulaw.silence(200) + voiced(400) + bytes([0xF0]) * 1600 + mulaw.silence(500)  # quiet, speech, hum
    whole, odd = CallerSpeechDetector(), CallerSpeechDetector()
    by_frame = [whole.process(audio[i : i + 160], now=i / 8000) for i in range(0, len(audio), 160)]
    by_chunk = [odd.process(audio[i : i + 100], now=i / 8000) for i in range(0, len(audio), 100)]
    assert sum(u.speech_confirmed for u in by_frame) == sum(u.speech_confirmed for u in by_chunk) == 1
    assert sum(u.speech_ended for u in by_frame) == sum(u.speech_ended for u in by_chunk) == 1
    assert any(u.voiced for u in by_frame) and not by_frame[-1].voiced
