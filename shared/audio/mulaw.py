"""G.711 mu-law <-> PCM16, the one codec module, on CPython's `audioop` (C: a 20 ms frame decodes or measures in
a fraction of a microsecond, where numpy's per-call overhead costs several, and this runs on every frame of every
call). Python 3.13 dropped `audioop` from the standard library; the `audioop-lts` package carries the same module
on from there (pyproject.toml).
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt

with warnings.catch_warnings():  # 3.11 and 3.12 warn of the removal that audioop-lts covers
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160 bytes of mu-law = 20 ms
BYTES_PER_MS = SAMPLE_RATE // 1000
SILENCE_BYTE = 0xFF
_WIDTH = 2  # bytes per PCM16 sample


def to_pcm16(ulaw: bytes) -> bytes:
    """mu-law bytes -> PCM16 bytes (native order), as webrtcvad takes them."""
    return audioop.ulaw2lin(ulaw, _WIDTH)


def decode(ulaw: bytes) -> npt.NDArray[np.int16]:
    """mu-law bytes -> PCM16 samples (a read-only view of the decoded bytes)."""
    return np.frombuffer(to_pcm16(ulaw), dtype=np.int16)


def pcm16_rms(pcm: bytes) -> int:
    """The RMS of PCM16 bytes, rounded down."""
    return int(audioop.rms(pcm, _WIDTH))


def rms(ulaw: bytes) -> int:
    """The RMS of mu-law audio's samples, rounded down."""
    return pcm16_rms(to_pcm16(ulaw))


def codes_below(amplitude: int) -> bytes:
    """Every mu-law code whose |sample| is below `amplitude`. `not audio.translate(None, codes_below(a))` says, in
    one C call, that no sample of `audio` reaches `a`."""
    return bytes(code for code, sample in enumerate(decode(bytes(range(256)))) if abs(int(sample)) < amplitude)


def encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """PCM16 samples -> mu-law bytes (G.711, as the Sun g711.c reference)."""
    return audioop.lin2ulaw(np.ascontiguousarray(pcm, dtype=np.int16).tobytes(), _WIDTH)


def duration_ms(ulaw: bytes) -> float:
    return len(ulaw) / BYTES_PER_MS


def frames(ulaw: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Cut audio into 20 ms frames; the last one is padded with silence so Twilio plays it whole."""
    out = [ulaw[i : i + size] for i in range(0, len(ulaw), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes([SILENCE_BYTE]) * (size - len(out[-1]))
    return out


def silence(ms: int) -> bytes:
    return bytes([SILENCE_BYTE]) * (ms * BYTES_PER_MS)


class FrameAssembler:
    """Re-cuts audio arriving in arbitrary chunk sizes into whole 20 ms frames."""

    def __init__(self, size: int = FRAME_BYTES) -> None:
        self._size = size
        self._pending = b""
        self.total_bytes = 0

    def push(self, chunk: bytes) -> list[bytes]:
        self.total_bytes += len(chunk)
        data = self._pending + chunk
        whole = len(data) - len(data) % self._size
        self._pending = data[whole:]
        return [data[i : i + self._size] for i in range(0, whole, self._size)]

    def flush(self) -> list[bytes]:
        """The last partial frame, padded with silence."""
        rest, self._pending = self._pending, b""
        return frames(rest, self._size)
