"""Audio in and out: any WAV/FLAC/OGG in, mono float32 at the rate a model
wants out, in bounded memory; WAV bytes out for pipes.

Input is a path or a binary stream (stdin included). A stream that cannot
seek is spooled to an anonymous temporary file in chunks first, because
libsndfile needs to seek; the file disappears when the source is closed.

    with open_audio("song.flac") as audio:          # any rate, any channels
        for block in audio.blocks(16000, 30.0):     # (samples,) float32 mono
            ...
    samples = read_audio(sys.stdin.buffer, 16000)   # short inputs, whole

`soundfile` and `soxr` are imported inside the functions that need them so
that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import struct
import tempfile
from typing import BinaryIO, Iterator, Union

import numpy as np

from mtools.errors import InputFormatError, InputMissingError

AudioInput = Union[str, os.PathLike, BinaryIO]

DEFAULT_BLOCK_S = 30.0
READ_CHUNK_FRAMES = 65_536  # source frames per libsndfile read: bounds memory at any channel count
SPOOL_CHUNK_BYTES = 1 << 20  # copy size when spooling a non-seekable stream to disk
RESAMPLE_QUALITY = "HQ"  # soxr's default: flat to ~0.9 of Nyquist, >100 dB stopband
SUPPORTED_FORMATS = "WAV, FLAC or OGG"
# WAV data sizes that writers streaming to a pipe put in the header before
# they know the length: 0 and 0xFFFFFFFF (most tools), 0x7FFFF000 (SoX),
# 0x80000000 (arecord).
STREAMED_WAV_DATA_SIZES = frozenset({0, 0x7FFFF000, 0x80000000, 0xFFFFFFFF})


class AudioSource:
    """An open audio input. Use `open_audio` to make one, and close it (or use
    it as a context manager) to release the file and any spooled copy.

    sample_rate_hz: the file's own rate; channels: its channel count;
    num_frames: samples per channel; duration_s: num_frames / sample_rate_hz.
    """

    def __init__(self, sound_file, name: str, spool: BinaryIO | None = None):
        self._file = sound_file
        self._spool = spool
        self.name = name
        self.sample_rate_hz = int(sound_file.samplerate)
        self.channels = int(sound_file.channels)
        self.num_frames = int(sound_file.frames)
        self.format = str(sound_file.format)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sample_rate_hz

    def __enter__(self) -> "AudioSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        if self._spool is not None:
            self._spool.close()  # an anonymous temp file: closing deletes it

    def _mono_chunks(self) -> Iterator[np.ndarray]:
        """The whole file from its start as mono float32 chunks at the file's
        own rate, READ_CHUNK_FRAMES frames at a time."""
        with _decode_errors(self.name):
            self._file.seek(0)
            first_frame = 0
            while True:
                frames = self._file.read(READ_CHUNK_FRAMES, dtype="float32",
                                         always_2d=True)  # (frames, channels)
                if len(frames) == 0:
                    return
                self._check_finite(frames, first_frame)
                first_frame += len(frames)
                yield _downmix(frames)

    def _check_finite(self, frames: np.ndarray, first_frame: int) -> None:
        """Refuse NaN and infinite samples (float WAVs can hold them): a
        model fed one returns NaN, not notes. frames: (frames, channels),
        the first of them at `first_frame` in the file."""
        finite = np.isfinite(frames).all(axis=1)  # (frames,)
        if finite.all():
            return
        bad_frame = first_frame + int(np.argmin(finite))
        raise InputFormatError(f"{self.name}: sample {bad_frame} "
                               f"({bad_frame / self.sample_rate_hz:.3f} s) is not a finite "
                               f"number (NaN or infinity)")

    def blocks(self, target_rate_hz: int,
               block_s: float = DEFAULT_BLOCK_S) -> Iterator[np.ndarray]:
        """Consecutive mono float32 blocks of `block_s` seconds at
        `target_rate_hz` (the last one shorter), from the start of the file.

        Each block is (round(block_s * target_rate_hz),) samples. One
        resampler runs across the whole file, so block boundaries add no
        artefacts and the concatenated blocks equal `read()` to float
        precision. Memory is bounded by the block size, not the file size.
        """
        if target_rate_hz <= 0 or block_s <= 0:
            raise ValueError("target_rate_hz and block_s must be positive")
        block_samples = max(1, round(block_s * target_rate_hz))
        resampled = _resample_stream(self._mono_chunks(), self.sample_rate_hz,
                                     target_rate_hz)
        return _rechunk(resampled, block_samples)

    def read(self, target_rate_hz: int) -> np.ndarray:
        """The whole file as one (samples,) float32 mono array at
        `target_rate_hz`. Memory grows with the file: for long inputs use
        `blocks`."""
        import soxr

        with _decode_errors(self.name):
            self._file.seek(0)
            frames = self._file.read(dtype="float32", always_2d=True)
        self._check_finite(frames, 0)
        mono = _downmix(frames)  # (frames,)
        if target_rate_hz == self.sample_rate_hz:
            return mono
        return soxr.resample(mono, self.sample_rate_hz, target_rate_hz,
                             quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


def open_audio(source: AudioInput, *, name: str | None = None) -> AudioSource:
    """Open a WAV/FLAC/OGG file (any rate, any channel count) from a path or
    a binary stream, read from its current position. A path that is a pipe
    (`<(...)`, /dev/stdin) is treated as a stream. `name` labels error
    messages (default: the path, or the stream's name, or "<stream>").

    Raises InputMissingError for a path that cannot be read, InputFormatError
    for bytes that are not audio or hold no samples.
    """
    if not isinstance(source, (str, os.PathLike)):
        return _open_stream(source, name or _stream_name(source))
    label = name or os.fspath(source)
    with _open_path(source, label) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return _open_spooled(_spool_to_disk(handle, label), label)
    if info.st_size == 0:
        raise InputFormatError(f"{label} is empty: it contains no audio samples")
    return _open_sound_file(os.fspath(source), label, spool=None)


def read_audio(source: AudioInput, target_rate_hz: int, *,
               name: str | None = None) -> np.ndarray:
    """Read a whole (short) audio input as mono float32 at `target_rate_hz`.
    Returns (samples,). See `open_audio` for inputs and errors."""
    with open_audio(source, name=name) as audio:
        return audio.read(target_rate_hz)


def wav_bytes(samples: np.ndarray, sample_rate_hz: int, *,
              subtype: str = "PCM_16") -> bytes:
    """A complete WAV file in memory, ready for a pipe (soundfile cannot
    finish a WAV header on a stream that does not seek).

    samples: (n,) mono or (n, channels) float in [-1, 1]; values outside are
    clipped (never wrapped) and NaN becomes 0. subtype: a soundfile WAV
    subtype such as "PCM_16", "PCM_24" or "FLOAT".
    """
    import soundfile

    data = np.asarray(samples, dtype=np.float32)
    if data.ndim not in (1, 2) or (data.ndim == 2 and data.shape[1] == 0):
        raise ValueError(f"samples must be (n,) or (n, channels), got {data.shape}")
    data = np.clip(np.nan_to_num(data, nan=0.0), -1.0, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, data, int(sample_rate_hz), format="WAV", subtype=subtype)
    return buffer.getvalue()


# --- helpers -------------------------------------------------------------------


def _open_sound_file(target, label: str, spool: BinaryIO | None) -> AudioSource:
    import soundfile

    if spool is None:  # a pipe's header size is an estimate: its copy was fixed instead
        _check_wav_length(target, label)
    _check_ogg_end(target if spool is None else spool, label)
    with _decode_errors(label, target):
        sound_file = soundfile.SoundFile(target)
    if sound_file.frames <= 0:
        sound_file.close()
        raise InputFormatError(f"{label} contains no audio samples")
    return AudioSource(sound_file, label, spool)


@contextlib.contextmanager
def _decode_errors(label: str, target=None) -> Iterator[None]:
    """Turn libsndfile's errors into one readable InputFormatError line,
    which names the format when `target` (a path or seekable file) holds
    notes, not audio."""
    import soundfile

    try:
        yield
    except soundfile.LibsndfileError as exc:
        kind = _symbolic_format(target)
        if kind is not None:
            raise InputFormatError(f"{label}: holds notes ({kind}), not audio; this command "
                                   f"reads {SUPPORTED_FORMATS}") from None
        detail = " ".join(str(exc.error_string).split()).rstrip(".")
        raise InputFormatError(f"{label}: not a readable {SUPPORTED_FORMATS} audio "
                               f"file (libsndfile: {detail})") from exc


# Note formats whose first bytes say so beyond doubt (a zip, JSON or XML file
# could be anything), by the name a message gives them.
NOTE_FORMATS = {"midi": "MIDI", "abc": "ABC"}


def _symbolic_format(target) -> str | None:
    """The name of the note format (NOTE_FORMATS) `target`'s first bytes
    show, if any; None for anything else, or when they cannot be read
    again."""
    from mtools.io.sniff import SNIFF_BYTES, sniff_format

    try:
        if hasattr(target, "seek"):
            target.seek(0)
            head = target.read(SNIFF_BYTES)
        else:
            with open(target, "rb") as stream:
                head = stream.read(SNIFF_BYTES)
        kind = sniff_format(head)
    except (OSError, TypeError, ValueError, InputFormatError):
        return None
    return NOTE_FORMATS.get(kind)


def _open_stream(stream: BinaryIO, label: str) -> AudioSource:
    """Read a seekable stream in place from its start; spool any other."""
    if not _at_start_of_seekable(stream):
        return _open_spooled(_spool_to_disk(stream, label), label)
    size_bytes = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    if size_bytes == 0:
        raise InputFormatError(f"{label} is empty: it contains no audio samples")
    return _open_sound_file(stream, label, spool=None)


def _open_spooled(spool: BinaryIO, label: str) -> AudioSource:
    try:
        _fill_in_streamed_wav_size(spool)
        return _open_sound_file(spool, label, spool=spool)
    except BaseException:
        spool.close()
        raise


def _wav_data_chunk(handle: BinaryIO) -> tuple[int, int, int] | None:
    """(offset of the data chunk's size field, the size it announces in
    bytes, bytes per second from the fmt chunk or 0) for a RIFF WAV read
    from `handle`'s start; None for other formats or no data chunk."""
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, bytes_per_s = 12, 0
    while True:
        handle.seek(pos)
        chunk = handle.read(20)
        if len(chunk) < 8:
            return None
        size = struct.unpack("<I", chunk[4:8])[0]
        if chunk[:4] == b"data":
            return pos + 4, size, bytes_per_s
        if chunk[:4] == b"fmt " and len(chunk) == 20:
            bytes_per_s = struct.unpack("<I", chunk[16:20])[0]
        pos += 8 + size + (size & 1)  # chunks are padded to an even length


def _check_wav_length(target, label: str) -> None:
    """Refuse a WAV whose data chunk is cut short (libsndfile reads what
    is there without a word). A streamed placeholder size is no promise."""
    handle = open(target, "rb") if isinstance(target, (str, os.PathLike)) else target
    try:
        found = _wav_data_chunk(handle)
        available = handle.seek(0, os.SEEK_END) - (found[0] + 4) if found else 0
    finally:
        if handle is target:
            handle.seek(0)
        else:
            handle.close()
    if found is None or found[1] in STREAMED_WAV_DATA_SIZES or found[1] <= available:
        return
    missing = found[1] - available
    seconds = f", {missing / found[2]:.3f} s of audio" if found[2] else ""
    raise InputFormatError(f"{label}: truncated WAV: the data chunk announces {found[1]} "
                           f"bytes but the file ends after {available} "
                           f"({missing} bytes missing{seconds})")


OGG_TAIL_BYTES = 65_307  # the longest Ogg page: 27-byte header, 255 lacing values, 255 × 255


def _check_ogg_end(target, label: str) -> None:
    """Refuse an Ogg stream cut short (libsndfile decodes what is there
    without a word): its last page must be whole and mark the end of its
    stream (the header's end-of-stream flag)."""
    handle = open(target, "rb") if isinstance(target, (str, os.PathLike)) else target
    try:
        handle.seek(0)
        if handle.read(4) != b"OggS":
            return
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - OGG_TAIL_BYTES))
        tail = handle.read()
    finally:
        if handle is target:
            handle.seek(0)
        else:
            handle.close()
    start = tail.rfind(b"OggS\x00")  # capture pattern and stream structure version 0
    if start < 0:
        return  # no page header near the end: libsndfile judges it
    end = _ogg_page_end(tail, start)
    if end is not None and end < len(tail):
        return  # bytes after the page that looks last: "OggS" inside a packet, not a cut
    if end == len(tail) and tail[start + 5] & 0x04:
        return  # whole, and the end of its stream
    raise InputFormatError(f"{label}: truncated OGG: the stream ends before its last page")


def _ogg_page_end(data: bytes, start: int) -> int | None:
    """Where the Ogg page whose header starts at `start` ends (its header,
    lacing values and packet data); None when the header itself is cut."""
    if start + 27 > len(data):
        return None
    count = data[start + 26]
    lacing = data[start + 27:start + 27 + count]
    return None if len(lacing) < count else start + 27 + count + sum(lacing)


def _fill_in_streamed_wav_size(spool: BinaryIO) -> None:
    """A WAV streamed to a pipe has a placeholder or estimated data size
    (0, 2^31, SoX's guess before its effects ran): write the real one into
    our own spooled copy whenever it differs from a placeholder or
    announces more than came, so the audio is read to the end of the
    stream (libsndfile reads a size of 0 as no samples)."""
    found = _wav_data_chunk(spool)
    if found is not None:
        real_size = spool.seek(0, os.SEEK_END) - (found[0] + 4)
        estimated = found[1] in STREAMED_WAV_DATA_SIZES or found[1] > real_size
        if estimated and 0 < real_size <= 0xFFFFFFFF:
            spool.seek(found[0])
            spool.write(struct.pack("<I", real_size))
    spool.seek(0)


def _open_path(path, label: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise InputMissingError(f"{label}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputMissingError(f"{label}: is a directory, not an audio file") from exc
    except OSError as exc:
        raise InputMissingError(f"{label}: cannot be read ({exc.strerror})") from exc


def _stream_name(stream) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _at_start_of_seekable(stream) -> bool:
    try:
        return bool(stream.seekable()) and stream.tell() == 0
    except (AttributeError, OSError, ValueError):
        return False


def _spool_to_disk(stream: BinaryIO, label: str) -> BinaryIO:
    """Copy the rest of `stream` to an anonymous temporary file (deleted on
    close), SPOOL_CHUNK_BYTES at a time, and rewind it."""
    spool = tempfile.TemporaryFile(prefix="mtools-audio-")
    try:
        shutil.copyfileobj(stream, spool, SPOOL_CHUNK_BYTES)
        size_bytes = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    if size_bytes == 0:
        spool.close()
        raise InputFormatError(f"{label} is empty: it contains no audio samples")
    return spool


def _downmix(frames: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 -> (frames,) float32, the channel mean."""
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0])
    return frames.mean(axis=1, dtype=np.float32)


def _resample_stream(chunks: Iterator[np.ndarray], source_rate_hz: int,
                     target_rate_hz: int) -> Iterator[np.ndarray]:
    """Resample a stream of mono float32 chunks with one soxr stream."""
    if source_rate_hz == target_rate_hz:
        yield from chunks
        return
    import soxr

    resampler = soxr.ResampleStream(source_rate_hz, target_rate_hz, 1,
                                    dtype="float32", quality=RESAMPLE_QUALITY)
    for chunk in chunks:
        yield resampler.resample_chunk(chunk)
    yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def _rechunk(pieces: Iterator[np.ndarray], block_samples: int) -> Iterator[np.ndarray]:
    """Regroup 1-D pieces of any size into blocks of `block_samples` (the
    last block holds the remainder)."""
    pending: list[np.ndarray] = []
    pending_samples = 0
    for piece in pieces:
        pending.append(piece)
        pending_samples += len(piece)
        if pending_samples < block_samples:
            continue
        joined = np.concatenate(pending)
        starts = range(0, len(joined) - block_samples + 1, block_samples)
        for start in starts:
            yield joined[start:start + block_samples].copy()
        rest = joined[starts[-1] + block_samples:].copy()
        pending, pending_samples = [rest], len(rest)
    if pending_samples:
        yield np.concatenate(pending)
