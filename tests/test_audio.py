"""mtools.io.audio: reading any audio to mono at a model's rate, streaming in
bounded memory, and WAV bytes for pipes. Fixtures are sine waves written to
tmp_path; no binaries are committed."""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
import soundfile

from mtools.errors import InputFormatError, InputMissingError
from mtools.io.audio import open_audio, read_audio, wav_bytes

TARGET_RATE_HZ = 16000
TONE_HZ = 440.0


def sine(rate_hz: int, seconds: float, channels: int, freq_hz: float = TONE_HZ,
         amplitude: float = 0.5) -> np.ndarray:
    """(frames, channels) float32, the same sine on every channel."""
    t = np.arange(round(rate_hz * seconds)) / rate_hz
    tone = (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return np.repeat(tone[:, None], channels, axis=1)


def write_sine(path, rate_hz: int, channels: int, seconds: float = 1.0,
               format: str = "WAV", subtype: str = "PCM_16"):
    soundfile.write(path, sine(rate_hz, seconds, channels), rate_hz,
                    format=format, subtype=subtype)
    return path


def peak_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate_hz)[np.argmax(spectrum)])


@pytest.mark.parametrize("format, subtype, rate_hz, channels", [
    ("WAV", "PCM_16", 44100, 1),
    ("WAV", "PCM_16", 48000, 2),
    ("WAV", "PCM_24", 96000, 8),
    ("WAV", "FLOAT", 8000, 1),
    ("FLAC", "PCM_16", 22050, 2),
    ("OGG", "VORBIS", 44100, 2),
])
def test_reads_any_format_rate_and_channels(tmp_path, format, subtype, rate_hz, channels):
    path = write_sine(tmp_path / f"tone.{format.lower()}", rate_hz, channels,
                      format=format, subtype=subtype)
    with open_audio(path) as audio:
        assert (audio.sample_rate_hz, audio.channels) == (rate_hz, channels)
        assert audio.duration_s == pytest.approx(1.0, abs=1e-3)
        samples = audio.read(TARGET_RATE_HZ)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - TARGET_RATE_HZ) <= 2
    assert peak_hz(samples, TARGET_RATE_HZ) == pytest.approx(TONE_HZ, abs=2.0)
    assert np.abs(samples).max() == pytest.approx(0.5, abs=0.03)


def test_downmix_is_the_channel_mean(tmp_path):
    frames = sine(16000, 0.5, 2)
    frames[:, 1] = 0.0
    soundfile.write(tmp_path / "left.wav", frames, 16000, subtype="FLOAT")
    mono = read_audio(tmp_path / "left.wav", 16000)
    np.testing.assert_allclose(mono, frames[:, 0] / 2, atol=1e-6)


def test_blocks_equal_whole_file_read(tmp_path):
    path = write_sine(tmp_path / "long.wav", 96000, 8, seconds=3.3, subtype="PCM_24")
    with open_audio(path) as audio:
        whole = audio.read(TARGET_RATE_HZ)
        blocks = list(audio.blocks(TARGET_RATE_HZ, 0.5))
        again = list(audio.blocks(TARGET_RATE_HZ, 0.5))  # restarts from the top
    assert [len(b) for b in blocks[:-1]] == [8000] * 6
    assert 0 < len(blocks[-1]) <= 8000
    streamed = np.concatenate(blocks)
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-3)
    np.testing.assert_array_equal(np.concatenate(again), streamed)


def test_same_rate_needs_no_resampling(tmp_path):
    path = write_sine(tmp_path / "t.wav", TARGET_RATE_HZ, 1, subtype="FLOAT")
    expected = sine(TARGET_RATE_HZ, 1.0, 1)[:, 0]
    np.testing.assert_array_equal(read_audio(path, TARGET_RATE_HZ), expected)


def read_from_pipe(payload: bytes) -> np.ndarray:
    """read_audio of `payload` written into a real (non-seekable) pipe."""
    read_fd, write_fd = os.pipe()

    def feed():
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_fd, "rb") as stream:
        assert not stream.seekable()
        samples = read_audio(stream, TARGET_RATE_HZ)
    writer.join()
    return samples


def test_non_seekable_pipe_is_spooled(tmp_path):
    path = write_sine(tmp_path / "t.flac", 44100, 2, format="FLAC")
    from_pipe = read_from_pipe(path.read_bytes())
    np.testing.assert_array_equal(from_pipe, read_audio(path, TARGET_RATE_HZ))


def with_data_size(wav: bytes, data_bytes: int) -> bytes:
    """The WAV with its data chunk's size field set to `data_bytes`."""
    at = wav.index(b"data") + 4
    return wav[:at] + struct.pack("<I", data_bytes) + wav[at + 4:]


@pytest.mark.parametrize("placeholder", [0, 0x7FFFF000, 0x80000000, 0xFFFFFFFF, 123456])
def test_wav_streamed_to_a_pipe_with_a_placeholder_size_is_read_to_the_end(tmp_path,
                                                                           placeholder):
    # arecord writes 2^31 to a pipe, SoX its estimate before effects ran
    path = write_sine(tmp_path / "t.wav", TARGET_RATE_HZ, 1)
    streamed = with_data_size(path.read_bytes(), placeholder)
    np.testing.assert_array_equal(read_from_pipe(streamed), read_audio(path, TARGET_RATE_HZ))
    if placeholder == 0x80000000:  # arecord > rec.wav: the same header in a file
        (tmp_path / "rec.wav").write_bytes(streamed)
        np.testing.assert_array_equal(read_audio(tmp_path / "rec.wav", TARGET_RATE_HZ),
                                      read_audio(path, TARGET_RATE_HZ))


def test_cut_short_wav_is_a_format_error_saying_how_much_is_missing(tmp_path):
    whole = write_sine(tmp_path / "t.wav", 8000, 1).read_bytes()  # 16000 data bytes
    (tmp_path / "cut.wav").write_bytes(whole[:1000])
    message = "truncated WAV: .* 16000 bytes .* ends after 956 \\(15044 bytes missing, 0.940 s"
    for source in (tmp_path / "cut.wav", io.BytesIO(whole[:1000])):
        with pytest.raises(InputFormatError, match=message) as caught:
            read_audio(source, TARGET_RATE_HZ)
        assert caught.value.exit_code == 65
    # From a pipe the size is no promise (a recorder's estimate): what came is read.
    assert len(read_from_pipe(whole[:1000])) > 0


def test_cut_short_ogg_is_a_format_error_from_a_file_or_a_pipe(tmp_path):
    whole = write_sine(tmp_path / "t.ogg", 22050, 1, seconds=3.0, format="OGG",
                       subtype="VORBIS").read_bytes()
    assert len(read_audio(tmp_path / "t.ogg", TARGET_RATE_HZ)) > 0
    last_page = whole.rfind(b"OggS")
    for cut in (len(whole) - 100, last_page):  # inside the last page; at its start
        (tmp_path / "cut.ogg").write_bytes(whole[:cut])
        with pytest.raises(InputFormatError, match="cut.ogg: truncated OGG"):
            read_audio(tmp_path / "cut.ogg", TARGET_RATE_HZ)
        with pytest.raises(InputFormatError, match="truncated OGG"):
            read_from_pipe(whole[:cut])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_a_format_error_naming_the_file(tmp_path, bad):
    frames = sine(8000, 1.0, 2)
    frames[4000, 1] = bad
    path = tmp_path / "float.wav"
    soundfile.write(path, frames, 8000, subtype="FLOAT")
    message = f"^{re.escape(str(path))}: sample 4000 \\(0.500 s\\) is not a finite number"
    with pytest.raises(InputFormatError, match=message):
        read_audio(path, TARGET_RATE_HZ)
    with open_audio(path) as audio, pytest.raises(InputFormatError, match=message):
        list(audio.blocks(TARGET_RATE_HZ, 0.1))


def test_streams_are_read_from_their_current_position(tmp_path):
    path = write_sine(tmp_path / "t.wav", 22050, 1)
    stream = io.BytesIO(b"JUNK" + path.read_bytes())
    assert stream.read(4) == b"JUNK"
    np.testing.assert_array_equal(read_audio(stream, TARGET_RATE_HZ),
                                  read_audio(path, TARGET_RATE_HZ))
    seekable = io.BytesIO(path.read_bytes())
    assert len(read_audio(seekable, TARGET_RATE_HZ)) == pytest.approx(TARGET_RATE_HZ, abs=2)


def test_spooled_copy_is_deleted(tmp_path, monkeypatch):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(spool_dir))
    payload = write_sine(tmp_path / "t.wav", 8000, 1).read_bytes()

    class Unseekable(io.RawIOBase):
        def __init__(self):
            self._inner = io.BytesIO(payload)

        def readable(self):
            return True

        def readinto(self, buffer):
            return self._inner.readinto(buffer)

    with open_audio(io.BufferedReader(Unseekable())) as audio:
        assert audio.num_frames == 8000
    assert list(spool_dir.iterdir()) == []


def test_zero_length_wav_is_a_format_error(tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(InputFormatError, match="contains no audio samples"):
        read_audio(tmp_path / "empty.wav", TARGET_RATE_HZ)
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(InputFormatError, match="contains no audio samples"):
        read_audio(tmp_path / "zero.wav", TARGET_RATE_HZ)
    with pytest.raises(InputFormatError, match="contains no audio samples"):
        read_audio(io.BytesIO(b""), TARGET_RATE_HZ)


def test_random_bytes_are_a_readable_format_error(tmp_path):
    noise = np.random.default_rng(0).bytes(4096)
    (tmp_path / "noise.wav").write_bytes(noise)
    for source, label in ((tmp_path / "noise.wav", str(tmp_path / "noise.wav")),
                          (io.BytesIO(noise), "<stream>")):
        with pytest.raises(InputFormatError) as caught:
            read_audio(source, TARGET_RATE_HZ)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{label}: not a readable WAV, FLAC or OGG audio file")
        assert caught.value.exit_code == 65


def test_notes_given_as_audio_are_named_as_what_they_are(tmp_path):
    midi = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
    (tmp_path / "song.wav").write_bytes(midi)  # a MIDI file under an audio name
    for source, label, kind in ((tmp_path / "song.wav", str(tmp_path / "song.wav"), "MIDI"),
                                (io.BytesIO(b"X:1\nT:t\nK:C\nCDEF|]\n" * 30), "<stream>", "ABC")):
        with pytest.raises(InputFormatError) as caught:
            read_audio(source, TARGET_RATE_HZ)
        assert str(caught.value) == (f"{label}: holds notes ({kind}), not audio; this command "
                                     "reads WAV, FLAC or OGG")
    with pytest.raises(InputFormatError, match="not a readable WAV"):  # JSON could be anything
        read_audio(io.BytesIO(b'{"notes": []}\n' * 40), TARGET_RATE_HZ)


def test_missing_path_is_missing_input(tmp_path):
    with pytest.raises(InputMissingError, match="no such file"):
        read_audio(tmp_path / "nope.wav", TARGET_RATE_HZ)
    with pytest.raises(InputMissingError, match="directory"):
        read_audio(tmp_path, TARGET_RATE_HZ)


def write_sparse_silent_wav(path, seconds: int, rate_hz: int) -> None:
    """A 16-bit mono WAV of silence that takes no disk: a correct header,
    then a hole made by truncate()."""
    data_bytes = seconds * rate_hz * 2
    header = (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate_hz, rate_hz * 2, 2, 16)
              + b"data" + struct.pack("<I", data_bytes))
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + data_bytes)


def test_two_hour_file_streams_in_bounded_memory(tmp_path):
    """A 2-hour 8 kHz file (115 MB of samples, 460 MB as float32 at 16 kHz)
    streams in 30 s blocks with a traced peak of ~11 MB; ~1.5 s on 2 cores."""
    seconds = 2 * 60 * 60
    path = tmp_path / "two_hours.wav"
    write_sparse_silent_wav(path, seconds, 8000)
    tracemalloc.start()
    try:
        total = 0
        with open_audio(path) as audio:
            assert audio.duration_s == seconds
            for block in audio.blocks(TARGET_RATE_HZ, 30.0):
                assert len(block) <= 30 * TARGET_RATE_HZ
                total += len(block)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == seconds * TARGET_RATE_HZ
    assert peak_bytes < 50e6


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_bytes_round_trip(channels):
    frames = sine(22050, 0.25, channels)
    frames = frames[:, 0] if channels == 1 else frames
    data = wav_bytes(frames, 22050)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    back, rate_hz = soundfile.read(io.BytesIO(data), dtype="float32")
    assert rate_hz == 22050 and back.shape == frames.shape
    np.testing.assert_allclose(back, frames, atol=1.0 / 32768)


def test_wav_bytes_clips_instead_of_wrapping():
    data = wav_bytes(np.array([1.5, -1.5, np.nan, 0.25], np.float32), 8000)
    back, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    assert back.tolist() == [32767, -32768, 0, 8192]
    floats, _ = soundfile.read(io.BytesIO(wav_bytes([[2.0, -0.5]], 8000, subtype="FLOAT")))
    assert floats.tolist() == [[1.0, -0.5]]


def test_importing_io_modules_loads_no_audio_libraries():
    code = ("import sys, mtools.io.audio, mtools.io.render; "
            "print(sorted(m for m in ('soundfile', 'soxr', 'tinysoundfont') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"
