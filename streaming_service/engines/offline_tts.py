"""Offline text to speech: espeak-ng (from the `espeakng-loader` wheel) through ctypes.

espeak-ng is one global, non-thread-safe engine per process, so every synthesis runs on a single
dedicated worker thread. Audio leaves espeak in small blocks through a synth callback (synchronous
mode), is resampled 22050 -> 8000 Hz with a streaming soxr resampler and encoded to mu-law with the
one codec module, and is handed to the event loop block by block, so the first audio of a sentence
is out long before the sentence is finished. Short texts (greetings, apologies) are cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor

import espeakng_loader
import numpy as np
import soxr

from shared.audio import mulaw
from streaming_service.engines.base import EngineError, TextToSpeech

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_BUFFER_MS = 60  # espeak calls back with ~60 ms blocks: small enough to stream, big enough to be cheap
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_DONE = object()  # end-of-sentence marker on the chunk queue


class _EspeakEvent(ctypes.Structure):
    # Only the leading `type` field is read; the rest is declared so the pointer type is honest.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


class _Espeak:
    """The process-wide espeak-ng engine. Only ever touched from its one worker thread."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        data_path = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, 0)
        if rate <= 0:
            raise EngineError("espeak-ng", "initialisation failed")
        self.sample_rate: int = rate
        # The callback sends each block to whoever is synthesising now; keep a reference so the
        # C function pointer is not garbage-collected while espeak holds it.
        self.sink: Callable[[bytes], bool] | None = None
        self._callback = _SynthCallback(self._on_audio)
        self.lib.espeak_SetSynthCallback(self._callback)
        self._voice: tuple[str, int] | None = None

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: object) -> int:
        if count <= 0 or self.sink is None:
            return 0
        keep_going = self.sink(ctypes.string_at(wav, count * 2))
        return 0 if keep_going else 1  # a non-zero return aborts the synthesis (cancellation)

    def synth(self, text: str, voice: str, rate_wpm: int, sink: Callable[[bytes], bool]) -> None:
        if self._voice != (voice, rate_wpm):
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EngineError("espeak-ng", f"unknown voice {voice!r}")
            self.lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
            self._voice = (voice, rate_wpm)
        encoded = text.encode() + b"\0"
        # espeak jitters its waveform with rand(); a fixed seed makes a text always sound the same
        # (stable cache, reproducible tests and benchmarks).
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
        self.sink = sink
        try:
            status = self.lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            self.sink = None
        if status != 0:
            raise EngineError("espeak-ng", f"synthesis failed (status {status})")


# One thread owns espeak for the whole process: that is the lock.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
_engine: _Espeak | None = None


def _get_engine() -> _Espeak:
    global _engine  # only called on the espeak thread
    if _engine is None:
        _engine = _Espeak()
    return _engine


def split_sentences(text: str) -> list[str]:
    return [part for part in (p.strip() for p in _SENTENCE_END.split(text)) if part]


class OfflineTextToSpeech(TextToSpeech):
    name = "espeak-ng"

    def __init__(self, voice: str = "en-us", rate_wpm: int = 160, cache_max_chars: int = 120,
                 cache_entries: int = 64) -> None:
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.cache_max_chars = cache_max_chars
        self.cache_entries = cache_entries
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.cache_hits = 0

    async def warm(self, texts: list[str], voice_id: str | None = None) -> None:
        """Pre-synthesise fixed phrases (the greeting) so the first words of a call are instant."""
        for text in texts:
            async for _ in self.synthesize(text, voice_id):
                pass

    async def synthesize(self, text: str, voice_id: str | None = None, *, previous_text: str = "",
                         next_text: str = "") -> AsyncGenerator[bytes, None]:
        # voice_id may be a vendor's id when we are the fallback; only espeak voice names apply.
        voice = voice_id if voice_id and not _looks_like_vendor_id(voice_id) else self.voice
        key = (text.strip(), voice)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            yield cached
            return
        produced: list[bytes] = []
        for sentence in split_sentences(text):
            # aclosing: when our consumer stops, the sentence's generator aborts espeak right away.
            async with contextlib.aclosing(self._synthesize_sentence(sentence, voice)) as chunks:
                async for chunk in chunks:
                    produced.append(chunk)
                    yield chunk
        if len(key[0]) <= self.cache_max_chars and produced:
            self._cache[key] = b"".join(produced)
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)

    async def _synthesize_sentence(self, sentence: str, voice: str) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def work() -> None:
            engine = _get_engine()
            resampler = soxr.ResampleStream(engine.sample_rate, mulaw.SAMPLE_RATE, 1, dtype="int16")

            def emit(pcm: np.ndarray, last: bool = False) -> bool:
                out = resampler.resample_chunk(pcm, last=last)
                if len(out):
                    loop.call_soon_threadsafe(queue.put_nowait, mulaw.encode(out))
                return not cancelled.is_set()

            engine.synth(sentence, voice, self.rate_wpm,
                         lambda raw: emit(np.frombuffer(raw, dtype=np.int16)))
            emit(np.zeros(0, dtype=np.int16), last=True)

        job = loop.run_in_executor(_executor, work)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, _DONE))
        try:
            while (item := await queue.get()) is not _DONE:
                assert isinstance(item, bytes)
                yield item
            await job  # surfaces EngineError from the worker
        except EngineError:
            raise
        except Exception as exc:  # ctypes/soxr failures become the seam's error type
            raise EngineError("espeak-ng", str(exc)) from exc
        finally:
            cancelled.set()  # the next callback aborts espeak if we stopped listening early


def _looks_like_vendor_id(voice_id: str) -> bool:
    # ElevenLabs ids are 20 opaque alphanumerics; espeak names are short and lower case ("en-us").
    return len(voice_id) >= 16 and voice_id.isalnum()
