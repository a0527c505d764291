"""The offline engines end to end: espeak-ng speaks mu-law 8 kHz, pocketsphinx hears it back.

No network and no keys. Audio is synthesised, never recorded, so the results are reproducible.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.offline_stt_wer import DEMO_LINES, DEMO_VOICE, measure_wer, synthesise_call_audio, transcribe
from shared.audio import mulaw
from streaming_service.engines.base import EngineError, TranscriptKind, VendorCapacityError
from streaming_service.engines.offline_stt import OfflineSpeechToText, offline_streams_open
from streaming_service.engines.offline_tts import OfflineTextToSpeech

# Measured with bench/offline_stt_wer.py: 13.6% in a fresh process (20.7% before the final pass's
# denoising and fricative band); other synthesis running first moves it by some points (espeak's pitch
# flutter carries state between calls). The margin covers that drift.
MAX_DOMAIN_WER = 0.25


async def _collect(tts: OfflineTextToSpeech, text: str) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize(text)]


async def test_tts_speaks_a_sentence_as_mulaw_8khz_of_plausible_length() -> None:
    audio = b"".join(await _collect(OfflineTextToSpeech(cache_max_chars=0), "Thanks for calling, how can I help?"))
    # 7 words at 160 wpm is about 2.6 s: anything between 1.5 and 5 s is speech at a sane rate
    # (a sample-rate mix-up would be off by 2.75x either way).
    assert 1500 < mulaw.duration_ms(audio) < 5000
    pcm = mulaw.decode(audio)
    assert abs(pcm.astype(int)).max() > 4000  # speech, not silence


async def test_tts_streams_long_text_in_several_chunks() -> None:
    text = ("Your haircut is booked for tomorrow at three in the afternoon. "
            "We will send you a reminder. Is there anything else I can help you with?")
    chunks = await _collect(OfflineTextToSpeech(), text)
    assert len(chunks) > 3
    assert mulaw.duration_ms(b"".join(chunks)) > 5000


async def test_tts_serves_a_short_fixed_phrase_from_cache() -> None:
    tts = OfflineTextToSpeech()
    await tts.warm(["Sorry, I didn't catch that."])
    assert tts.cache_hits == 0
    first = b"".join(await _collect(tts, "Sorry, I didn't catch that."))
    second = b"".join(await _collect(tts, "Sorry, I didn't catch that."))
    assert tts.cache_hits == 2
    assert first == second and len(first) > 0


async def test_tts_stops_when_the_consumer_stops_and_keeps_working() -> None:
    tts = OfflineTextToSpeech(cache_max_chars=0)
    stream = tts.synthesize("This sentence is long enough to be cut off part of the way through it.")
    first = await anext(stream)
    await stream.aclose()  # a barge-in: espeak is told to abort on its next callback
    assert first
    assert b"".join(await _collect(tts, "Still here.")), "espeak must be usable after a cancel"


@pytest.mark.parametrize(
    ("spoken", "accepted"),
    [
        ("i'd like to book a haircut tomorrow at three", {"i'd like to book a haircut tomorrow at three"}),
        ("goodbye", {"goodbye"}),
        ("no thank you", {"no thank you"}),
        ("yes", {"yes", "yeah"}),  # espeak's "yes" is often heard as "yeah": same answer
    ],
)
async def test_stt_recognises_synthesised_domain_phrases_through_the_stream(
    spoken: str, accepted: set[str]
) -> None:
    audio = await synthesise_call_audio(OfflineTextToSpeech(), spoken)
    text, kinds = await transcribe(OfflineSpeechToText(), audio)
    assert text in accepted
    assert kinds[0] is TranscriptKind.SPEECH_STARTED
    assert kinds[-2:] == [TranscriptKind.FINAL, TranscriptKind.UTTERANCE_END]
    if len(spoken.split()) > 2:
        assert TranscriptKind.INTERIM in kinds[1:-2]  # interims arrive while the caller speaks


async def test_stt_final_closes_the_turn_and_silence_produces_nothing() -> None:
    stt = OfflineSpeechToText()
    stream = await stt.open_stream("CA-test")
    for frame in mulaw.frames(mulaw.silence(2000)):
        await stream.send_audio(frame)
    audio = await synthesise_call_audio(OfflineTextToSpeech(), "what are your hours")
    for frame in mulaw.frames(audio):
        await stream.send_audio(frame)
    await stream.close()
    await stream.close()  # idempotent
    events = [event async for event in stream.events()]
    finals = [e for e in events if e.kind is TranscriptKind.FINAL]
    assert [e.text for e in finals] == ["what are your hours"]
    assert finals[0].speech_final
    assert [e.kind for e in events].count(TranscriptKind.SPEECH_STARTED) == 1


async def test_a_full_process_refuses_a_stream_as_a_capacity_signal_and_frees_it_at_close() -> None:
    stt = OfflineSpeechToText(max_streams=1)
    first = await stt.open_stream("CA-1")
    with pytest.raises(VendorCapacityError):  # VendorCapacityExhausted on the dashboard, not VendorErrors
        await stt.open_stream("CA-2")
    await first.close()
    await first.close()  # a second close frees nothing more
    second = await stt.open_stream("CA-2")
    assert offline_streams_open() == 1
    await second.close()
    assert offline_streams_open() == 0


async def test_a_dead_decoder_host_fails_its_streams_loudly_and_the_next_stream_gets_a_new_host() -> None:
    # Decoding runs in a child process (pocketsphinx holds the GIL); if that process dies, its streams
    # must end in an error the call handles (not look like a caller gone quiet), and free their places.
    stt = OfflineSpeechToText()
    audio = await synthesise_call_audio(OfflineTextToSpeech(), "what are your hours")
    stream = await stt.open_stream("CA-1")
    dead = stream._recogniser.host  # type: ignore[attr-defined]
    for pid in list(dead.executor._processes):
        os.kill(pid, signal.SIGKILL)
    for frame in mulaw.frames(audio):
        await stream.send_audio(frame)
    with pytest.raises(EngineError):
        async for _ in stream.events():
            pass
    with pytest.raises(EngineError):
        await stream.close()
    assert offline_streams_open() == 0
    again = await stt.open_stream("CA-2")
    assert again._recogniser.host is not dead  # type: ignore[attr-defined]
    for frame in mulaw.frames(audio):
        await again.send_audio(frame)
    await again.close()
    assert [e.text for e in [e async for e in again.events()] if e.kind is TranscriptKind.FINAL] == \
        ["what are your hours"]


_SERVICE_WITH_A_HOST = textwrap.dedent("""
    import asyncio, time
    from streaming_service.engines.offline_stt import OfflineSpeechToText, _Hosts

    async def main() -> None:
        await OfflineSpeechToText().warm_up()
        print(next(iter(_Hosts.hosts[0].executor._processes)), flush=True)
        time.sleep(60)

    asyncio.run(main())
""")


def _running(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split()[1]  # exited, not yet reaped by whoever adopted it


def test_a_decoder_host_leaves_with_a_service_killed_outright() -> None:
    # SIGKILL or the OOM killer run no atexit: without its own watch, the host would live on, one per crash.
    service = subprocess.Popen([sys.executable, "-c", _SERVICE_WITH_A_HOST], cwd=Path(__file__).resolve().parents[2],
                               stdout=subprocess.PIPE, text=True)
    assert service.stdout is not None
    host = int(service.stdout.readline())
    assert _running(host)
    service.kill()
    service.wait()
    deadline = time.monotonic() + 10
    while _running(host) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _running(host)
    if alive:
        os.kill(host, signal.SIGKILL)
    assert not alive


async def test_stt_word_error_rate_on_the_domain_phrase_set() -> None:
    report = await measure_wer()
    assert report.wer <= MAX_DOMAIN_WER, f"WER {report.wer:.1%}"


# "smith" through a phone line is mostly lost: its /s/ and /th/ live above 4 kHz, and the wideband
# pocketsphinx model hears the rest as another short word ("my name is john kate", "... eighth",
# "... please": 0 of 12 fresh syntheses exact); the agent still gets the first name. The other five
# lines were exact in 12 of 12 (espeak's pitch flutter makes each process's audio a little different).
_MISHEARD_DEMO_LINES = {"my name is john smith"}


@pytest.mark.parametrize(
    "line",
    [pytest.param(line, marks=pytest.mark.xfail(strict=True, reason="the /s/ and /th/ of smith are above 4 kHz"))
     if line in _MISHEARD_DEMO_LINES else line for line in DEMO_LINES],
)
async def test_stt_hears_the_demo_callers_lines_exactly(line: str) -> None:
    """Each of `make demo`'s caller lines in its caller's voice, as mu-law 8 kHz through the stream."""
    voice, wpm = DEMO_VOICE
    audio = await synthesise_call_audio(OfflineTextToSpeech(voice=voice, rate_wpm=wpm), line)
    text, _ = await transcribe(OfflineSpeechToText(), audio)
    assert text == line
