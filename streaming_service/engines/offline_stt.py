"""Offline speech to text: pocketsphinx with a booking-call language model, webrtcvad endpointing.

The bundled pocketsphinx model is a 16 kHz one, so phone audio (mu-law 8 kHz) is decoded to PCM16
and upsampled with soxr before recognition. Its filterbank reaches 6.8 kHz: upsampled phone audio
leaves the top filters at log(0), far from anything the model was trained on, so a faint fixed
noise floor is added above 4 kHz (measured: WER 30% -> 18%; retuning the filterbank for 8 kHz
instead wrecks recognition, the model's means no longer match). The stock general-English LM does
badly on phone audio; a small trigram LM built at start-up from the booking domain's phrases
(dates, times, services, names, yes/no, hours, "speak to a person") does far better, with a heavier
language weight and wider beams (see bench/offline_stt_wer.py).

The final pass (see `_Recogniser`) repairs what the phone line did before it recognises: it takes
the line noise out (spectral subtraction with the spectrum of the utterance's quietest frames) and
gives fricatives back some energy above 4 kHz (`_fricative_band`). A final that opens like a yes/no
answer is decoded again against the closed set of yes/no answers (booking_language.py): those few
words decide a booking ("yeah really" -> "yes please"). Measured with `bench/offline_stt_wer.py --full`
(104 phrases x 2 espeak-ng voices x 2 speeds, telephone band, 20 dB noise), WER 39.3% before: final
pass only, a louder high-band floor and denoising 31.8%, the fricative band 27.9%; then the whole
pipeline with the LM's discount mass at 0.02 and the yes/no pass, 26.8-27.0% (espeak's pitch flutter
varies between runs; real-time factor 0.14-0.15 on one core). The yes/no pass costs nothing on the
bench's WER (26.9% without) and makes "yes please" exact (12 of 12 fresh syntheses, 10 of 12 without).

Per-frame work on the event loop is a table lookup and one webrtcvad call (microseconds); audio is
handed to the recogniser in ~200 ms batches, one job at a time per stream, in a decoder host: a child
process (pocketsphinx holds the GIL while it decodes; see `_DecoderHost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import multiprocessing.util
import os
import random
import re
import signal
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pocketsphinx
import soxr
import webrtcvad
from pocketsphinx.lm import ArpaBoLM

from shared.audio import mulaw
from streaming_service.engines.base import (
    EngineError,
    SpeechToText,
    SpeechToTextStream,
    TranscriptEvent,
    TranscriptKind,
    VendorCapacityError,
)
from streaming_service.engines.booking_language import (
    YES_NO_ANSWERS,
    looks_like_yes_no,
    robust_sentences,
    yes_no_grammar,
)

MODEL_RATE = 16000  # the bundled en-us acoustic model's sample rate
FRAME_MS = 20

LanguageModel = Literal["domain", "default"]


@dataclass(frozen=True)
class OfflineEndpointingOptions:
    """webrtcvad endpointing for the offline recogniser."""

    vad_aggressiveness: int = 2  # webrtcvad 0..3
    speech_start_ms: int = 60  # consecutive voiced audio that opens an utterance
    end_silence_ms: int = 500  # trailing silence that closes it (FINAL, speech_final=True)
    preroll_ms: int = 200  # audio kept from before the start, so the first phoneme is not clipped
    final_silence_kept_ms: int = 100  # trailing silence left in the final pass (more skews its CMN)
    decode_batch_ms: int = 200  # audio per recogniser job: one interim hypothesis per batch at most
    max_utterance_ms: int = 20000  # force a final on endless "speech" (line noise)


# --- the booking-domain language model ------------------------------------------------------------

_SERVICES = ["haircut", "appointment", "consultation", "cleaning", "trim", "color", "massage",
             "checkup", "manicure", "beard trim", "teeth cleaning", "cut and color"]
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DAYS = ["today", "tomorrow", "the day after tomorrow", "this week", "next week",
         *_WEEKDAYS, *(f"next {d}" for d in _WEEKDAYS), *(f"this {d}" for d in _WEEKDAYS)]
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
             "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
             "seventeenth", "eighteenth", "nineteenth", "twentieth", "twenty first", "twenty second",
             "twenty third", "twenty fourth", "twenty fifth", "twenty sixth", "twenty seventh",
             "twenty eighth", "twenty ninth", "thirtieth", "thirty first"]
_HOURS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve"]
_MINUTES = ["", " o'clock", " fifteen", " thirty", " forty five", " oh five", " ten", " twenty",
            " forty", " fifty"]
_PERIODS = ["", " am", " pm", " in the morning", " in the afternoon", " in the evening"]
_NAMES = ["john", "sarah", "michael", "emily", "david", "maria", "james", "anna", "robert", "lisa",
          "daniel", "laura", "chris", "alex", "kate", "tom", "peter", "susan", "mark", "jennifer",
          "smith", "jones", "brown", "johnson", "williams", "miller", "davis", "garcia", "wilson"]
_FIXED = [
    "yes", "yeah", "yes please", "yes that's right", "yes that works", "yep", "sure", "okay",
    "correct", "that's correct", "that's right", "perfect", "sounds good", "that works for me",
    "no", "nope", "no thanks", "no thank you", "not really", "no that's wrong", "that's not right",
    "goodbye", "bye", "bye bye", "thank you goodbye", "thanks bye", "that's all thank you",
    "thank you", "thanks", "hello", "hi", "hi there", "good morning", "good afternoon",
    "can i speak to a person", "can i talk to a person", "i want to speak to a person",
    "i'd like to speak to someone", "let me talk to a human", "can i speak to a real person",
    "speak to a person please", "operator", "representative",
    "what are your hours", "what are your opening hours", "when are you open", "what time do you open",
    "what time do you close", "how late are you open", "where are you located",
    "i need to cancel my appointment", "i want to cancel", "can i reschedule my appointment",
    "i'd like to change my booking", "i'd like to make an appointment", "i'd like to book",
    "i want to make a booking", "do you have any availability", "what times do you have",
    "is there anything earlier", "is there anything later", "anything in the morning",
    "what's available", "say that again", "sorry i didn't catch that", "can you repeat that",
    "hold on", "one moment", "just a second", "um", "uh", "i'm not sure", "i don't know",
]
_TEMPLATES = [
    "i'd like to book a {service}", "i'd like to book a {service} {day}",
    "i'd like to book a {service} {day} at {time}", "i'd like to book a {service} for {day} at {time}",
    "i want to book a {service} {day} at {time}", "can i book a {service} for {day}",
    "can i get a {service} {day} at {time}", "i need a {service} {day}",
    "i'd like an {service} {day} at {time}", "i need an {service} on {date}",
    "do you have anything {day}", "do you have anything at {time}", "are you open {day}",
    "what are your hours on {day}", "{day} at {time}", "{day} at {time} please", "at {time}",
    "{time}", "{time} please", "{time} works", "how about {time}", "how about {day}",
    "{day}", "on {day}", "{date}", "on {date}", "on {date} at {time}", "{day} please",
    "my name is {name}", "it's {name}", "this is {name}", "{name}", "{name} {surname}",
    "my name is {name} {surname}", "yes {day} at {time} is fine", "can we do {time} instead",
    "how much is a {service}", "i'd like to book a {service} please",
]


def domain_sentences(count: int = 4000, seed: int = 7) -> list[str]:
    """Training text for the domain LM: fixed phrases plus templates with sampled slot values."""
    rng = random.Random(seed)  # deterministic: the same LM every start
    times = [f"{h}{m}{p}" for h, m, p in itertools.product(_HOURS, _MINUTES, _PERIODS)]
    times += ["noon", "midday", "half past three", "quarter past two", "quarter to five"]
    dates = [f"{m} {o}" for m, o in itertools.product(_MONTHS, _ORDINALS)]
    dates += [f"the {o}" for o in _ORDINALS]
    sentences = list(_FIXED) * 20  # fixed phrases weigh like a slot template

    def fill(template: str) -> str:
        return template.format(service=rng.choice(_SERVICES), day=rng.choice(_DAYS),
                               time=rng.choice(times), date=rng.choice(dates),
                               name=rng.choice(_NAMES), surname=rng.choice(_NAMES))

    sentences += [fill(rng.choice(_TEMPLATES)) for _ in range(count)]
    # Every slot value appears at least once even when the sample misses it.
    sentences += [*times, *dates, *_DAYS, *_SERVICES]
    sentences += robust_sentences()  # every full name, yes/no answers, digits (booking_language.py)
    return [s.replace("a appointment", "an appointment") for s in sentences]


class _ModelFiles:
    """The domain LM and a pruned dictionary, written once per process to a private temp dir."""

    _lock = threading.Lock()
    _dir: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def paths(cls) -> tuple[str, str]:
        with cls._lock:
            if cls._dir is None:
                tmp = tempfile.TemporaryDirectory(prefix="offline-stt-")
                _write_domain_model(Path(tmp.name))
                cls._dir = tmp
            return str(Path(cls._dir.name) / "domain.lm"), str(Path(cls._dir.name) / "domain.dict")


def _write_domain_model(directory: Path) -> None:
    pronunciations: dict[str, list[str]] = {}
    with open(pocketsphinx.get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as handle:
        for line in handle:
            word = re.sub(r"\(\d+\)$", "", line.split(" ", 1)[0])
            pronunciations.setdefault(word, []).append(line)
    # A sentence with a word the dictionary lacks would teach the LM a word it can never output.
    sentences = [s for s in domain_sentences() if all(w in pronunciations for w in s.split())]
    # A small discount mass keeps the LM close to the domain's word sequences: unseen pairs such as
    # "yeah earlier" get little backoff probability (bench --full, with booking_language's sentences and
    # remove_noise off: WER 51% -> 39% at 0.1; with the final pass's denoising and fricative band,
    # 0.1 -> 0.02 took en-us @ 140 wpm from 23.9% to 20.9%, and 0.005 was worse again, 22.0%).
    lm = ArpaBoLM(text="\n".join(sentences), add_start=True, discount_mass=0.02)
    lm.compute()
    lm.write_file(str(directory / "domain.lm"))
    vocabulary = sorted({w for s in sentences for w in s.split()})
    with open(directory / "domain.dict", "w", encoding="utf-8") as out:
        out.writelines(line for word in vocabulary for line in pronunciations[word])


# Tuned on the bench: language weight 10 (default 6.5) trusts the domain LM more; wider beams
# keep the right path alive through the synthetic-to-model acoustic mismatch.
# remove_noise off: on the bench the model's spectral noise removal cost words (the weak, band-limited
# fricatives of phone audio are the likely victims); the added high-band floor is steady anyway.
_DECODER_TUNING = {"lw": 10.0, "beam": 1e-60, "wbeam": 1e-40, "pbeam": 1e-60, "remove_noise": False}


YES_NO_SEARCH = "yes_no"


def _new_decoder(language_model: LanguageModel) -> pocketsphinx.Decoder:
    if language_model == "default":
        return pocketsphinx.Decoder(samprate=MODEL_RATE, loglevel="FATAL", **_DECODER_TUNING)
    lm_path, dict_path = _ModelFiles.paths()
    decoder = pocketsphinx.Decoder(samprate=MODEL_RATE, lm=lm_path, dict=dict_path, loglevel="FATAL",
                                   **_DECODER_TUNING)
    decoder.add_jsgf_string(YES_NO_SEARCH, yes_no_grammar())  # every word of it is in the domain dict
    return decoder


def _high_band_noise(seconds: int = 1, level: float = 50.0) -> npt.NDArray[np.float64]:
    """A fixed (seeded) second of white noise with everything below 4 kHz removed."""
    noise = np.random.default_rng(0).normal(0.0, level, MODEL_RATE * seconds)
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(len(noise), 1 / MODEL_RATE) < mulaw.SAMPLE_RATE / 2] = 0
    return np.fft.irfft(spectrum, len(noise))


def _denoise(pcm: npt.NDArray[np.int16], frame: int = 256, quiet_share: float = 0.2,
             floor_gain: float = 0.1) -> npt.NDArray[np.float64]:
    """Spectral subtraction on 8 kHz audio: the noise spectrum is the mean of the quietest fifth of
    the utterance's frames (its lead-in and trailing silence), subtracted once from every frame with
    a gain floor (bench: subtracting twice, or a lower floor, loses more speech than noise)."""
    if len(pcm) < 4 * frame:
        return pcm.astype(np.float64)
    spectrum, window = _stft(pcm.astype(np.float64), frame)
    power = np.abs(spectrum) ** 2
    energy = power.sum(axis=1)
    noise = power[energy <= np.quantile(energy, quiet_share)].mean(axis=0)
    gain = np.sqrt(np.maximum(1.0 - noise / np.maximum(power, 1e-9), floor_gain**2))
    return _istft(spectrum * gain, window, len(pcm))


def _stft(audio: npt.NDArray[np.float64], frame: int) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.float64]]:
    """Half-overlapping sqrt-Hann frames (the window in and out sums to one) and their spectra."""
    hop = frame // 2
    padded = np.concatenate([np.zeros(frame), audio, np.zeros(frame + hop)])
    window = np.sqrt(np.hanning(frame + 1)[:-1])
    return np.fft.rfft(np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop] * window, axis=1), window


def _istft(spectrum: npt.NDArray[np.complex128], window: npt.NDArray[np.float64], length: int
           ) -> npt.NDArray[np.float64]:
    frame = len(window)
    hop = frame // 2
    halves = (np.fft.irfft(spectrum, frame, axis=1) * window).reshape(len(spectrum), 2, hop)
    # Overlap-add at half a frame: each hop is one frame's second half plus the next frame's first.
    joined = np.concatenate([halves[:1, 0], halves[:-1, 1] + halves[1:, 0]]).reshape(-1)
    return joined[frame : frame + length]


def _fricative_band(audio: npt.NDArray[np.float64], frame: int = 512, gain: float = 2.0,
                    tilt: float = 0.5) -> npt.NDArray[np.float64]:
    """Give fricatives back some of the band above 4 kHz that the phone line cut (16 kHz audio).

    An /s/ or /th/ lives mostly above 4 kHz; through a phone line only its weak 2.5-4 kHz tail is
    left, which the wideband model does not take for a fricative ("smith" heard as "a"). Frames whose
    2.5-3.8 kHz energy outweighs their 200-1200 Hz energy (`tilt`, soft-gated) get noise above 3.9 kHz
    at `gain` times their 2.5-3.8 kHz level; voiced frames get next to none (bench --full: WER 31.8%
    -> 27.9%; the same noise on every frame, ungated, made it worse: 39%)."""
    spectrum, window = _stft(audio, frame)
    freqs = np.fft.rfftfreq(frame, 1 / MODEL_RATE)
    upper = (np.abs(spectrum[:, (freqs >= 2500) & (freqs <= 3800)]) ** 2).mean(axis=1)
    lower = (np.abs(spectrum[:, (freqs >= 200) & (freqs <= 1200)]) ** 2).mean(axis=1)
    gate = 1.0 / (1.0 + (tilt * lower / np.maximum(upper, 1e-9)) ** 4)  # = sigmoid(4 log(ratio / tilt))
    band = freqs >= 3900
    phases = np.exp(2j * np.pi * np.random.default_rng(0).random((len(spectrum), int(band.sum()))))
    spectrum[:, band] += (gain * np.sqrt(upper) * gate)[:, None] * phases
    return _istft(spectrum, window, len(audio))


_NOISE_FLOOR = _high_band_noise(level=400.0)  # bench: level 50 -> 400, WER 32.8% -> 31.8%


# --- the recogniser -------------------------------------------------------------------------------

_SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: no loop, thread or socket inherited
_HOSTS_MAX = max(1, min(4, os.cpu_count() or 1))
_T = TypeVar("_T")


class _DecoderHost:
    """A child process holding the decoders of the streams placed on it. pocketsphinx holds the GIL through
    each decode, a whole-utterance final pass for 100-200 ms: on a thread of the service's own process that
    made every call's event loop that late (p99 42 ms, worst 186 ms with one stream decoding; see
    bench/offline_stt_load.py); here the service only shares the CPU."""

    def __init__(self) -> None:
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=_SPAWN, initializer=_host_init)
        self.streams = 0

    async def call(self, work: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)
        except BrokenProcessPool as exc:
            _Hosts.discard(self)
            raise EngineError("pocketsphinx", "the recogniser's process died") from exc


class _Hosts:
    """This process's decoder hosts, started as streams need them, up to `_HOSTS_MAX`."""

    hosts: ClassVar[list[_DecoderHost]] = []

    @classmethod
    def place(cls) -> _DecoderHost:
        """The host with the fewest streams; a new one while every host has some and there is room."""
        host = min(cls.hosts, key=lambda h: h.streams, default=None)
        if host is None or (host.streams and len(cls.hosts) < _HOSTS_MAX):
            if not cls.hosts:
                # Before multiprocessing joins a process's children at its exit (a worker of the service is
                # one): a host only leaves when told, and concurrent.futures tells it after that join. Before
                # the queues' own finalizers too (priority 10), which stop the thread that would tell it.
                multiprocessing.util.Finalize(None, cls.stop_all, exitpriority=100)
            host = _DecoderHost()
            cls.hosts.append(host)
        return host

    @classmethod
    def stop_all(cls) -> None:
        for host in list(cls.hosts):
            cls.discard(host, wait=True)

    @classmethod
    def discard(cls, host: _DecoderHost, wait: bool = False) -> None:
        if host in cls.hosts:
            cls.hosts.remove(host)
            host.executor.shutdown(wait=wait, cancel_futures=True)


def offline_streams_open() -> int:
    """Streams decoding in this process (a dead host's decode nothing): process-wide, since the CPU they
    share is the process's."""
    return sum(host.streams for host in _Hosts.hosts)


# --- in a decoder host --------------------------------------------------------------------------------

_HOSTED: dict[str, _Recogniser] = {}  # this host's streams' recognisers, by stream key


def _host_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the service decides
    service = os.getppid()

    def leave_with_the_service() -> None:
        # A service killed outright (OOM, SIGKILL) runs no atexit: its host would live on as an orphan,
        # ~50 MB each, one more per crash.
        while os.getppid() == service:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=leave_with_the_service, name="service-watch", daemon=True).start()


def _host_warm(language_model: LanguageModel) -> None:
    _new_decoder(language_model)  # writes the domain model and loads the acoustic one, once per host


def _host_models_loaded() -> bool:
    return _ModelFiles._dir is not None


def _host_open(key: str, language_model: LanguageModel) -> None:
    _HOSTED[key] = _Recogniser(_new_decoder(language_model), YES_NO_SEARCH if language_model == "domain" else None)


def _host_start(key: str) -> None:
    _HOSTED[key].start()


def _host_feed(key: str, pcm: npt.NDArray[np.int16], last: bool, trim_ms: int) -> str:
    return _HOSTED[key].feed(pcm, last=last, trim_ms=trim_ms)


def _host_close(key: str) -> None:
    _HOSTED.pop(key, None)


class _HostedRecogniser:
    """A stream's recogniser, living in a decoder host; it holds one of the process's stream places."""

    def __init__(self, host: _DecoderHost, key: str) -> None:
        self.host = host
        self.key = key

    async def start(self) -> None:
        await self.host.call(_host_start, self.key)

    async def feed(self, pcm: npt.NDArray[np.int16], last: bool, trim_ms: int) -> str:
        return await self.host.call(_host_feed, self.key, pcm, last, trim_ms)

    async def close(self) -> None:
        self.host.streams -= 1
        with contextlib.suppress(Exception):  # a dead host has forgotten it already
            await self.host.call(_host_close, self.key)


class OfflineSpeechToText(SpeechToText):
    name = "pocketsphinx"

    def __init__(self, options: OfflineEndpointingOptions | None = None,
                 language_model: LanguageModel = "domain", max_streams: int = 0) -> None:
        """`max_streams`: how many streams may decode at once in this process (0: no limit); past it,
        `open_stream` refuses (a VendorCapacityError) rather than slow every call in the process down."""
        self.options = options or OfflineEndpointingOptions()
        self.language_model: LanguageModel = language_model
        self.max_streams = max_streams

    async def warm_up(self) -> None:
        """Start a decoder host and load the models in it: the first decoder of a process writes the domain
        model (reading the whole CMU dictionary in Python) and loads the acoustic model, ~450 ms, so the
        first stream (the first call of a local server, or the first Deepgram outage a process meets)
        would start that late. In the host, the service's loop runs on meanwhile."""
        await _Hosts.place().call(_host_warm, self.language_model)

    async def open_stream(self, call_sid: str) -> SpeechToTextStream:
        if self.max_streams and offline_streams_open() >= self.max_streams:
            # A capacity refusal (metric VendorCapacityExhausted, vendor pocketsphinx), not an outage.
            raise VendorCapacityError(self.name, f"all {self.max_streams} offline recognisers of the process in use")
        host = _Hosts.place()  # taken before the first await, so two calls cannot both take the last place
        host.streams += 1
        recogniser = _HostedRecogniser(host, uuid.uuid4().hex)
        try:
            await host.call(_host_open, recogniser.key, self.language_model)
        except BaseException as exc:
            await recogniser.close()
            if isinstance(exc, RuntimeError) and not isinstance(exc, EngineError):
                raise EngineError(self.name, f"cannot load the recogniser: {exc}") from exc
            raise
        return OfflineSpeechToTextStream(recogniser, self.options)


class _Recogniser:
    """One pocketsphinx decoder; only ever called from one job at a time (the stream's order).

    Interim hypotheses come from live decoding. The model normalises cepstra per utterance
    (batch CMN); live, it can only use the previous utterance's estimate, which for a caller's
    first words is the model's default and ruins recognition. So the final pass decodes the whole
    utterance again with full_utt=True, after taking the line noise out (`_denoise`, which needs the
    whole utterance): about twice the CPU, for a final that is as good as offline. A final that
    looks like a yes/no answer is decoded a third time against the yes/no grammar (a short
    utterance, a small search).
    """

    def __init__(self, decoder: pocketsphinx.Decoder, yes_no_search: str | None = None) -> None:
        self.decoder = decoder
        self.resampler: soxr.ResampleStream | None = None
        self.utterance: list[npt.NDArray[np.int16]] = []  # 8 kHz, as received
        self.position = 0  # samples of the utterance so far, to continue the noise floor seamlessly
        self.main_search = decoder.current_search()
        self.yes_no = yes_no_search

    def start(self) -> None:
        self.resampler = soxr.ResampleStream(mulaw.SAMPLE_RATE, MODEL_RATE, 1, dtype="int16")
        self.utterance = []
        self.position = 0
        self.decoder.start_utt()

    def _with_noise_floor(self, audio: npt.NDArray[np.float64], position: int) -> npt.NDArray[np.int16]:
        index = (position + np.arange(len(audio))) % len(_NOISE_FLOOR)
        return np.clip(audio + _NOISE_FLOOR[index], -32768, 32767).astype(np.int16)

    def feed(self, pcm: npt.NDArray[np.int16], last: bool = False, trim_ms: int = 0) -> str:
        """Decode more audio; with `last`, end the utterance, first cutting `trim_ms` of trailing
        silence from the final pass (batch CMN averages over silence too)."""
        assert self.resampler is not None
        self.utterance.append(pcm)
        audio = self.resampler.resample_chunk(pcm, last=last).astype(np.float64)
        self.decoder.process_raw(self._with_noise_floor(audio, self.position).tobytes())
        self.position += len(audio)
        if not last:
            hyp = self.decoder.hyp()
            return hyp.hypstr if hyp is not None else ""
        self.decoder.end_utt()
        clean = _fricative_band(soxr.resample(_denoise(np.concatenate(self.utterance)), mulaw.SAMPLE_RATE,
                                              MODEL_RATE))
        whole = self._with_noise_floor(clean[: max(0, len(clean) - trim_ms * MODEL_RATE // 1000)], 0)
        self.utterance = []
        text = self._decode_whole(whole)
        if self.yes_no is not None and looks_like_yes_no(text):
            self.decoder.activate_search(self.yes_no)
            try:
                answer = self._decode_whole(whole)
            finally:
                self.decoder.activate_search(self.main_search)
            # A grammar search that never reached the end of an answer returns its best partial path
            # ("thank"); only a whole answer replaces what the language model heard.
            text = answer if answer in YES_NO_ANSWERS else text
        return text

    def _decode_whole(self, audio: npt.NDArray[np.int16]) -> str:
        self.decoder.reinit_feat()  # forget the live pass's noise and CMN estimates
        self.decoder.start_utt()
        self.decoder.process_raw(audio.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


_Job = TranscriptEvent | Callable[[], Awaitable[TranscriptEvent | None]] | None  # None closes the stream


class OfflineSpeechToTextStream(SpeechToTextStream):
    def __init__(self, recogniser: _HostedRecogniser, options: OfflineEndpointingOptions) -> None:
        self._recogniser = recogniser
        self._options = options
        self._vad = webrtcvad.Vad(options.vad_aggressiveness)
        self._frame_samples = mulaw.SAMPLE_RATE * FRAME_MS // 1000
        self._leftover = b""
        self._preroll: deque[npt.NDArray[np.int16]] = deque(maxlen=options.preroll_ms // FRAME_MS)
        self._pending: list[npt.NDArray[np.int16]] = []
        self._in_speech = False
        self._voiced_ms = 0
        self._silence_ms = 0
        self._utterance_ms = 0
        self._last_interim = ""
        self._closed = False
        self._failed = False
        # Jobs run in order: events pass through the same queue so they never overtake results.
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._events: asyncio.Queue[TranscriptEvent | None] = asyncio.Queue()
        self._worker = asyncio.create_task(self._run_jobs())

    async def send_audio(self, ulaw: bytes) -> None:
        if self._closed or self._failed:
            return
        data = self._leftover + ulaw
        whole = len(data) - len(data) % self._frame_samples
        self._leftover = data[whole:]
        for start in range(0, whole, self._frame_samples):
            self._on_frame(mulaw.decode(data[start : start + self._frame_samples]))

    def _on_frame(self, pcm: npt.NDArray[np.int16]) -> None:
        voiced = self._vad.is_speech(pcm.tobytes(), mulaw.SAMPLE_RATE)
        if not self._in_speech:
            self._preroll.append(pcm)
            self._voiced_ms = self._voiced_ms + FRAME_MS if voiced else 0
            if self._voiced_ms >= self._options.speech_start_ms:
                self._begin_utterance()
            return
        self._pending.append(pcm)
        self._utterance_ms += FRAME_MS
        self._silence_ms = 0 if voiced else self._silence_ms + FRAME_MS
        if (self._silence_ms >= self._options.end_silence_ms
                or self._utterance_ms >= self._options.max_utterance_ms):
            self._end_utterance()
        elif len(self._pending) * FRAME_MS >= self._options.decode_batch_ms:
            self._submit_batch(last=False)

    def _begin_utterance(self) -> None:
        self._in_speech = True
        self._silence_ms = 0
        self._utterance_ms = len(self._preroll) * FRAME_MS
        self._last_interim = ""
        self._pending = list(self._preroll)
        self._preroll.clear()
        self._jobs.put_nowait(TranscriptEvent(TranscriptKind.SPEECH_STARTED))
        self._jobs.put_nowait(self._start_job)

    def _end_utterance(self) -> None:
        self._submit_batch(last=True)
        self._jobs.put_nowait(TranscriptEvent(TranscriptKind.UTTERANCE_END))
        self._in_speech = False
        self._voiced_ms = 0

    async def _start_job(self) -> None:
        await self._recogniser.start()

    def _submit_batch(self, last: bool) -> None:
        pcm = np.concatenate(self._pending) if self._pending else np.zeros(0, dtype=np.int16)
        self._pending = []
        trim_ms = max(0, self._silence_ms - self._options.final_silence_kept_ms) if last else 0

        async def job() -> TranscriptEvent | None:
            text = await self._recogniser.feed(pcm, last=last, trim_ms=trim_ms)
            if last:
                # An utterance with no words yields no FINAL (as Deepgram), only UTTERANCE_END.
                return TranscriptEvent(TranscriptKind.FINAL, text, speech_final=True) if text else None
            if text and text != self._last_interim:
                self._last_interim = text
                return TranscriptEvent(TranscriptKind.INTERIM, text)
            return None

        self._jobs.put_nowait(job)

    async def _run_jobs(self) -> None:
        try:
            while (job := await self._jobs.get()) is not None:
                event = job if isinstance(job, TranscriptEvent) else await job()
                if event is not None:
                    self._events.put_nowait(event)
        except Exception:
            self._failed = True  # stop buffering audio nobody will decode; close() re-raises
            raise
        finally:
            self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[TranscriptEvent]:
        while (event := await self._events.get()) is not None:
            yield event
        if self._failed:  # a recogniser that stopped must not look like a caller gone quiet
            raise EngineError("pocketsphinx", "the recogniser stopped")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._in_speech:
            self._end_utterance()  # flush: the caller's last words still become a FINAL
        self._jobs.put_nowait(None)
        try:
            await self._worker
        except Exception as exc:
            raise EngineError("pocketsphinx", str(exc)) from exc
        finally:
            await self._recogniser.close()
