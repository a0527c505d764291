"""Deterministic "marked speech": voiced audio that also tells a fake STT server what was said.

The application only forwards audio bytes to the STT vendor, so the text has to travel inside the
audio. Each mu-law byte's least significant bit carries one bit of a packet

    MAGIC (4 bytes) | length (2 bytes, big endian) | UTF-8 text | CRC-32 of the text (4 bytes)

sent MSB first from the first sample on. Flipping a mu-law LSB moves a sample by one quantisation
step, so the signal stays a voiced, harmonic, amplitude-modulated tone that webrtcvad calls speech.
The decoder looks for the magic at every byte offset and checks the CRC, so the packet survives
arbitrary chunking and any audio around it.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from shared.audio import mulaw

MAGIC = bytes([0xD5, 0x3C, 0x96, 0x1B])
_MAGIC_BITS = np.unpackbits(np.frombuffer(MAGIC, dtype=np.uint8))
_MAGIC_PATTERN = _MAGIC_BITS.tobytes()
_HEADER_BYTES = len(MAGIC) + 2
_CRC_BYTES = 4
MAX_TEXT_BYTES = 2000  # a longer "length" is a false magic match


def _packet(text: str) -> npt.NDArray[np.uint8]:
    payload = text.encode("utf-8")
    if len(payload) > MAX_TEXT_BYTES:
        raise ValueError(f"marked text too long ({len(payload)} > {MAX_TEXT_BYTES} bytes)")
    packet = MAGIC + len(payload).to_bytes(2, "big") + payload + zlib.crc32(payload).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(packet, dtype=np.uint8))


def voiced_pcm(duration_ms: int, words: int = 1, seed: int = 0) -> npt.NDArray[np.int16]:
    """A speech-like signal: 120-200 Hz fundamental with harmonics, one syllable envelope per word.

    The envelope never drops below ~35 % between words, so an energy detector hears one utterance.
    """
    n = duration_ms * mulaw.SAMPLE_RATE // 1000
    t = np.arange(n) / mulaw.SAMPLE_RATE
    rng = np.random.default_rng(seed)
    words = max(words, 1)
    word_len = max(n // words, 1)
    position = (np.arange(n) % word_len) / word_len  # 0..1 within each word
    word_index = np.minimum(np.arange(n) // word_len, words - 1)
    # Each word gets its own pitch, gliding down a little like a spoken syllable.
    base_f0 = 120.0 + 80.0 * rng.random(words)
    f0 = base_f0[word_index] * (1.08 - 0.16 * position)
    phase = 2 * np.pi * np.cumsum(f0) / mulaw.SAMPLE_RATE
    signal = np.zeros(n)
    for k in range(1, 18):  # harmonics up to ~3.4 kHz, with a crude formant tilt
        weight = 1.0 / k * (1.6 if 3 <= k <= 5 else 1.0)
        signal += weight * np.sin(k * phase) * (k * f0 < 3400)
    envelope = 0.35 + 0.65 * np.sin(np.pi * position) ** 2
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t if n else t) / 0.01)  # 10 ms fade in/out
    signal = signal / (np.max(np.abs(signal)) or 1.0) * envelope * ramp * 9000
    return signal.astype(np.int16)


def unmarked_speech(duration_ms: int, seed: int = 0) -> bytes:
    """Voiced audio with no packet: the fake transcribes it as its `default_transcript`."""
    frames = -(-duration_ms // mulaw.FRAME_MS)
    return mulaw.encode(voiced_pcm(frames * mulaw.FRAME_MS, words=max(1, duration_ms // 260), seed=seed))


def sound_without_words(duration_ms: int, kind: str = "cough", gain: float = 1.0, seed: int = 0) -> bytes:
    """A cough (a voiced burst with a sharp attack and a decay) or line noise (a broadband burst), with
    no words in it: it carries an empty packet, so the fake recogniser hears nothing said, as a real
    one would. `gain` scales loudness (1.0 is as loud as `marked_speech`)."""
    duration_ms = -(-duration_ms // mulaw.FRAME_MS) * mulaw.FRAME_MS
    n = duration_ms * mulaw.SAMPLE_RATE // 1000
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, n)
    if kind == "cough":
        t = np.arange(n) / n
        envelope = np.minimum(1.0, t / 0.05) * np.exp(-2.5 * t)
        voiced = voiced_pcm(duration_ms, 1, seed).astype(np.float64) / 9000
        signal = (0.7 * voiced + 0.3 * noise / 3) * envelope
    else:
        signal = noise / 3
    pcm = np.clip(signal * 9000 * gain, -32767, 32767).astype(np.int16)
    return with_words(mulaw.encode(pcm), "")


def marked_speech(text: str, ms_per_word: int = 260) -> bytes:
    """mu-law 8 kHz audio (whole 20 ms frames) that sounds like speech and carries `text`."""
    bits = _packet(text)
    words = max(len(text.split()), 1)
    duration_ms = max(words * ms_per_word, len(bits) // mulaw.BYTES_PER_MS + mulaw.FRAME_MS)
    duration_ms = -(-duration_ms // mulaw.FRAME_MS) * mulaw.FRAME_MS
    return with_words(mulaw.encode(voiced_pcm(duration_ms, words, seed=zlib.crc32(text.encode()))), text)


def with_words(ulaw: bytes, text: str) -> bytes:
    """`ulaw` (any sound, e.g. a synthesised voice) carrying `text` for the fake recogniser."""
    bits = _packet(text)
    if len(bits) > len(ulaw):
        raise ValueError(f"{len(ulaw)} samples cannot carry {len(bits)} bits")
    marked = np.frombuffer(ulaw, dtype=np.uint8).copy()
    marked[: len(bits)] = (marked[: len(bits)] & 0xFE) | bits
    return marked.tobytes()


class MarkerDecoder:
    """Incremental packet finder: feed audio in any chunk sizes, get (byte offset, text) back."""

    def __init__(self) -> None:
        self._bits = np.zeros(0, dtype=np.uint8)  # LSBs not yet ruled out as a packet start
        self._offset = 0  # stream offset of self._bits[0]

    def feed(self, ulaw: bytes) -> list[tuple[int, str]]:
        new = np.frombuffer(ulaw, dtype=np.uint8) & 1
        self._bits = np.concatenate([self._bits, new])
        found: list[tuple[int, str]] = []
        start = 0
        while True:
            candidate = self._find_magic(start)
            if candidate is None:
                # Keep a tail that could still be the beginning of a magic.
                start = max(start, len(self._bits) - (len(_MAGIC_BITS) - 1))
                break
            result = self._parse(candidate)
            if result is None:  # packet incomplete: wait for more audio
                start = candidate
                break
            if result:
                found.append((self._offset + candidate, result[0]))
                start = candidate + result[1]
            else:
                start = candidate + 1  # false magic or bad CRC
        self._bits = self._bits[start:]
        self._offset += start
        return found

    def _find_magic(self, start: int) -> int | None:
        # One byte per bit, so the C substring search finds the magic (a sliding window of 32-bit compares
        # was a fifth of the fakes' CPU at 100 calls).
        at = self._bits.tobytes().find(_MAGIC_PATTERN, start)
        return None if at < 0 else at

    def _parse(self, at: int) -> tuple[str, int] | tuple[()] | None:
        """(text, packet bit length) if valid, () if not a packet, None if more bits are needed."""
        header_end = at + 8 * _HEADER_BYTES
        if len(self._bits) < header_end:
            return None
        length = int.from_bytes(np.packbits(self._bits[at + 8 * len(MAGIC) : header_end]).tobytes(), "big")
        if length > MAX_TEXT_BYTES:
            return ()
        end = header_end + 8 * (length + _CRC_BYTES)
        if len(self._bits) < end:
            return None
        body = np.packbits(self._bits[header_end:end]).tobytes()
        payload, crc = body[:length], body[length:]
        if zlib.crc32(payload).to_bytes(4, "big") != crc:
            return ()
        try:
            return payload.decode("utf-8"), end - at
        except UnicodeDecodeError:
            return ()


def find_marked_text(buffer: bytes) -> list[tuple[int, str]]:
    """Every packet in `buffer` as (byte offset, text)."""
    return MarkerDecoder().feed(buffer)
