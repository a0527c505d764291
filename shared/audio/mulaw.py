"""G.711 mu-law <-> PCM16, the one codec module (audioop is gone in Python 3.13).

Lookup tables make decode a single numpy index per frame; encode follows the ITU-T G.711 reference.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160 bytes of mu-law = 20 ms
BYTES_PER_MS = SAMPLE_RATE // 1000
SILENCE_BYTE = 0xFF

_BIAS = 0x84
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def _build_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


_DECODE = _build_decode_table()


def decode(ulaw: bytes) -> npt.NDArray[np.int16]:
    """mu-law bytes -> PCM16 samples."""
    return _DECODE[np.frombuffer(ulaw, dtype=np.uint8)]


SQUARES = decode(bytes(range(256))).astype(np.int64) ** 2  # each code's squared sample: energy by lookup


def energy(ulaw: bytes) -> int:
    """The sum of the squared samples of `ulaw`, by one lookup a byte and no float maths: louder than an RMS of
    `r` over one frame when above `r**2 * FRAME_BYTES`."""
    return int(SQUARES[np.frombuffer(ulaw, dtype=np.uint8)].sum())


def codes_below(amplitude: int) -> bytes:
    """Every mu-law code whose |sample| is below `amplitude`. `not audio.translate(None, codes_below(a))` says, in
    one C call and no numpy (which costs microseconds on a 20 ms frame), that no sample of `audio` reaches `a`."""
    return bytes(code for code in range(256) if abs(int(_DECODE[code])) < amplitude)


def encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """PCM16 samples -> mu-law bytes (the Sun g711.c algorithm, bit-exact with CPython's audioop)."""
    value = pcm.astype(np.int32) >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    value = np.minimum(np.abs(value), 8159) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, value, side="left")
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((value >> (segment + 1)) & 0x0F))
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()


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
