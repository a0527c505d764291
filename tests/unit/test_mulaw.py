"""The one codec, against known vectors (CPython's audioop, which Python 3.13 moved to the audioop-lts package)."""

import hashlib

import numpy as np

from shared.audio import mulaw

# sha256 of audioop.lin2ulaw over every int16 value, and of audioop.ulaw2lin over every code.
ENCODE_ALL_SHA256 = "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"
DECODE_ALL_SHA256 = "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"


def test_encode_matches_reference_for_every_sample():
    pcm = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    assert hashlib.sha256(mulaw.encode(pcm)).hexdigest() == ENCODE_ALL_SHA256


def test_decode_matches_reference_for_every_code():
    assert hashlib.sha256(mulaw.decode(bytes(range(256))).astype("<i2").tobytes()).hexdigest() == DECODE_ALL_SHA256


def test_spot_vectors():
    assert mulaw.encode(np.array([0], dtype=np.int16)) == b"\xff"
    assert mulaw.encode(np.array([32767, -32768], dtype=np.int16)) == b"\x80\x00"
    assert list(mulaw.decode(b"\xff\x7f\x80\x00")) == [0, 0, 32124, -32124]


def test_round_trip_error_is_small_relative_to_amplitude():
    t = np.arange(8000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    back = mulaw.decode(mulaw.encode(tone)).astype(np.int32)
    assert np.max(np.abs(back - tone)) <= 8000 * 0.04


def test_frames_are_20ms_and_padded_with_silence():
    out = mulaw.frames(b"\x00" * 170)
    assert [len(f) for f in out] == [160, 160]
    assert out[1][10:] == b"\xff" * 150


def test_frame_assembler_recuts_arbitrary_chunks():
    assembler = mulaw.FrameAssembler()
    got = []
    for size in (7, 300, 13, 1, 159):
        got += assembler.push(b"\x01" * size)
    got += assembler.flush()
    assert all(len(f) == 160 for f in got)
    assert assembler.total_bytes == 480
    assert len(got) == 3


def test_codes_below_are_exactly_the_quieter_codes():
    quiet = mulaw.codes_below(200)
    for code in range(256):
        assert (code in quiet) == (abs(int(mulaw.decode(bytes([code]))[0])) < 200)
    assert not mulaw.silence(20).translate(None, quiet)  # silence: every byte is a quiet code
    assert bytes([0x80]).translate(None, quiet) == bytes([0x80])  # the loudest code is kept


def test_rms_is_the_rounded_down_root_mean_square_of_the_decoded_samples():
    rng = np.random.default_rng(7)
    for amplitude in (0, 30, 200, 3000, 32000):
        frame = mulaw.encode(rng.normal(0, amplitude + 1, mulaw.FRAME_BYTES).clip(-32768, 32767).astype(np.int16))
        samples = mulaw.decode(frame).astype(np.float64)
        assert mulaw.rms(frame) == int(np.sqrt(np.mean(samples**2)))
        assert mulaw.pcm16_rms(mulaw.to_pcm16(frame)) == mulaw.rms(frame)
    assert mulaw.rms(mulaw.silence(20)) == 0
