"""Onsets and Frames (Hawthorne et al. 2018) as numpy around one ONNX graph:
the log-mel front end, frame labels from notes (for training and
evaluation), and the decoding of the network's onset / frame / offset /
velocity predictions into notes.

Frames are centred: frame i covers the window centred on sample
i · hop_samples, so it stands for time i · hop_samples / sample_rate_hz.
Every constant comes from the model card (`FrontEnd.from_card`,
`KeySpace.from_card`), so the piano and drum models share this code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterable, Iterator

import numpy as np

from mtools.score import Note, Score, apply_sustain

FFT_BATCH_FRAMES = 2048  # frames transformed at once: bounds the temporary spectra
LOG_FLOOR = 1e-6  # added to mel power before the log: silence reads ~ -13.8
HEADS = ("onset", "frame", "offset", "velocity")
DRUM_NOTE_S = 0.1  # how long a transcribed drum hit is written
DRUM_INSTRUMENT = 9  # drum notes' track (channel 10 in a MIDI file)


@dataclass(frozen=True)
class FrontEnd:
    """The log-mel spectrogram the network reads: a Hann-windowed STFT of
    `fft_samples` every `hop_samples` at `sample_rate_hz`, its power summed
    into `mel_bins` triangular bands between fmin_hz and fmax_hz (HTK mel
    scale, each band of unit area), then log(power + LOG_FLOOR)."""

    sample_rate_hz: int = 16_000
    hop_samples: int = 512
    fft_samples: int = 2048
    mel_bins: int = 229
    fmin_hz: float = 30.0
    fmax_hz: float = 8000.0

    @classmethod
    def from_card(cls, encoding: dict) -> FrontEnd:
        f = encoding["front_end"]
        return cls(int(f["sample_rate_hz"]), int(f["hop_samples"]), int(f["fft_samples"]),
                   int(f["mel_bins"]), float(f["fmin_hz"]), float(f["fmax_hz"]))

    def to_card(self) -> dict:
        return {"sample_rate_hz": self.sample_rate_hz, "hop_samples": self.hop_samples,
                "fft_samples": self.fft_samples, "mel_bins": self.mel_bins,
                "fmin_hz": self.fmin_hz, "fmax_hz": self.fmax_hz}

    @property
    def frame_s(self) -> float:
        return self.hop_samples / self.sample_rate_hz

    def frames_for(self, num_samples: int) -> int:
        """How many centred frames `num_samples` samples give."""
        return 1 + num_samples // self.hop_samples

    @cached_property
    def band_edges_hz(self) -> np.ndarray:
        """(mel_bins + 2,) float64: band i rises from edge i to its centre,
        edge i + 1, and falls to edge i + 2 (equally spaced in HTK mel)."""
        to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
        edges_mel = np.linspace(to_mel(self.fmin_hz), to_mel(self.fmax_hz), self.mel_bins + 2)
        return 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)

    @property
    def band_centres_hz(self) -> np.ndarray:
        """(mel_bins,) each band's centre frequency (a copy)."""
        return self.band_edges_hz[1:-1].copy()

    @cached_property
    def filterbank(self) -> np.ndarray:
        """(fft_samples // 2 + 1, mel_bins) float32 triangular mel bands."""
        edges_hz = self.band_edges_hz
        bins_hz = np.fft.rfftfreq(self.fft_samples, 1.0 / self.sample_rate_hz)[:, None]
        lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
        rising = (bins_hz - lower) / (centre - lower)
        falling = (upper - bins_hz) / (upper - centre)
        bands = np.maximum(0.0, np.minimum(rising, falling))
        return (bands * (2.0 / (upper - lower))).astype(np.float32)

    @cached_property
    def window(self) -> np.ndarray:
        return np.hanning(self.fft_samples + 1)[:-1].astype(np.float32)

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """(samples,) float mono at sample_rate_hz → (frames, mel_bins)
        float32, frames = frames_for(len(samples))."""
        half = self.fft_samples // 2
        padded = np.concatenate([np.zeros(half, np.float32), np.asarray(samples, np.float32),
                                 np.zeros(half, np.float32)])
        return self.frames_mel(padded, self.frames_for(len(samples)))

    def frames_mel(self, padded: np.ndarray, frames: int) -> np.ndarray:
        """`frames` mel frames of windows starting every hop in `padded`
        (the first window starts at padded[0]; padded must hold
        (frames - 1) · hop + fft_samples samples)."""
        out = np.empty((frames, self.mel_bins), np.float32)
        step = FFT_BATCH_FRAMES
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.fft_samples)
        for first in range(0, frames, step):
            block = windows[first * self.hop_samples:
                            (min(frames, first + step) - 1) * self.hop_samples + 1:self.hop_samples]
            power = np.abs(np.fft.rfft(block * self.window, axis=1)) ** 2  # (n, bins)
            out[first:first + len(block)] = np.log(power.astype(np.float32) @ self.filterbank
                                                   + LOG_FLOOR)
        return out

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Log-mel frames of audio arriving in blocks, as (n, mel_bins)
        arrays whose concatenation equals `log_mel` of the whole signal;
        memory is bounded by the block size."""
        half = self.fft_samples // 2
        buffer = np.zeros(half, np.float32)  # the centred first frame's left padding
        done, total = 0, 0  # frames emitted; samples seen
        for block in blocks:
            buffer = np.concatenate([buffer, np.asarray(block, np.float32)])
            total += len(block)
            ready = max(0, (len(buffer) - self.fft_samples) // self.hop_samples + 1)
            if ready:
                yield self.frames_mel(buffer, ready)
                buffer = buffer[ready * self.hop_samples:]
                done += ready
        remaining = self.frames_for(total) - done
        if remaining > 0:
            tail = np.concatenate([buffer, np.zeros(self.fft_samples, np.float32)])
            yield self.frames_mel(tail, remaining)


@dataclass(frozen=True)
class KeySpace:
    """What the network predicts, one output per key: a piano's `keys`
    consecutive MIDI pitches from `min_pitch` (21..108), or, when
    `drum_classes` is given, one output per class of General MIDI drum
    keys (a class is written as its first key)."""

    min_pitch: int = 21
    keys: int = 88
    drum_classes: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def drums(cls, classes: tuple[tuple[int, ...], ...]) -> KeySpace:
        return cls(0, len(classes), tuple(tuple(c) for c in classes))

    @property
    def is_drums(self) -> bool:
        return bool(self.drum_classes)

    @classmethod
    def from_card(cls, encoding: dict) -> KeySpace:
        if encoding.get("drum_classes"):
            return cls.drums(tuple(tuple(int(k) for k in c) for c in encoding["drum_classes"]))
        return cls(int(encoding["min_pitch"]), int(encoding["keys"]))

    def to_card(self) -> dict:
        if self.is_drums:
            return {"drum_classes": [list(c) for c in self.drum_classes], "keys": self.keys}
        return {"min_pitch": self.min_pitch, "keys": self.keys}

    def index_of(self, note: Note) -> int | None:
        """The output that plays `note`, or None (a drum for a piano, a key
        off the keyboard, a drum key in no class)."""
        if self.is_drums:
            if not note.is_drum:
                return None
            return next((i for i, c in enumerate(self.drum_classes) if note.pitch in c), None)
        key = note.pitch - self.min_pitch
        return key if not note.is_drum and 0 <= key < self.keys else None

    def pitch_of(self, index: int) -> int:
        return self.drum_classes[index][0] if self.is_drums else self.min_pitch + int(index)


def note_labels(score: Score, frames: int, front_end: FrontEnd, keys: KeySpace,
                *, sustain: bool = True) -> dict[str, np.ndarray]:
    """Training and evaluation targets of a score over `frames` frames, each
    (frames, keys): onset, frame and offset as 0/1 uint8, velocity as
    float32 velocity/127 on onset frames (0 elsewhere). Piano notes are
    first lengthened by the sustain pedal when `sustain` (as they are
    heard); notes no output plays are left out (see KeySpace.index_of). A
    note lasts at least one frame, a drum hit exactly one; a later onset on
    the same key wins the frame it starts."""
    labels = {name: np.zeros((frames, keys.keys), np.uint8) for name in ("onset", "frame", "offset")}
    velocity = np.zeros((frames, keys.keys), np.float32)
    notes = (apply_sustain(score) if sustain and not keys.is_drums else score).notes
    rate = 1.0 / front_end.frame_s
    for note in sorted(notes, key=lambda n: n.start_s):
        key = keys.index_of(note)
        start = int(round(note.start_s * rate))
        if key is None or start >= frames:
            continue
        # A drum hit is its onset: it lasts one frame whatever the MIDI says.
        end = start + 1 if keys.is_drums else max(start + 1, int(round(note.end_s * rate)))
        labels["frame"][start:min(end, frames), key] = 1
        labels["onset"][start, key] = 1
        velocity[start, key] = note.velocity / 127.0
        if end < frames:
            labels["offset"][end, key] = 1
    return {**labels, "velocity": velocity}


@dataclass(frozen=True)
class DecodeOptions:
    """Thresholds on the sigmoid outputs, and the shortest note kept. A
    threshold of None is the model's own (its card's `decoding`, chosen on
    validation audio; onset and frame 0.5, harmonic 0 where the card names
    none). `harmonic_threshold`: an onset that starts within
    HARMONIC_WINDOW_FRAMES of an onset at least as sure an octave, a twelfth
    or two octaves below it (where a piano note's strong partials lie) is
    kept only if its peak probability reaches this; at or under the onset
    threshold it changes nothing. `class_onset_thresholds`: one onset
    threshold per output (a drum model's classes, in order), in place of
    onset_threshold; a card's apply only where the onset threshold is the
    card's too (one given for the run applies to every class)."""

    onset_threshold: float | None = None
    frame_threshold: float | None = None
    min_note_s: float = 0.0
    harmonic_threshold: float | None = None
    class_onset_thresholds: tuple[float, ...] | None = None

    @classmethod
    def from_card(cls, encoding: dict) -> DecodeOptions:
        chosen = encoding.get("decoding", {})
        by_class = chosen.get(CLASS_THRESHOLDS)
        return cls(float(chosen.get("onset_threshold", 0.5)),
                   float(chosen.get("frame_threshold", 0.5)),
                   harmonic_threshold=float(chosen.get("harmonic_threshold", 0.0)),
                   class_onset_thresholds=None if by_class is None
                   else tuple(float(t) for t in by_class))

    def over(self, defaults: DecodeOptions) -> DecodeOptions:
        """These options, each threshold left as None taken from `defaults`
        (the per-class onset thresholds only with the onset threshold)."""
        filled = replace(self, **{name: getattr(defaults, name) for name in THRESHOLDS
                                  if getattr(self, name) is None})
        if self.onset_threshold is None and self.class_onset_thresholds is None:
            filled = replace(filled, class_onset_thresholds=defaults.class_onset_thresholds)
        return filled

    def onset_thresholds(self, keys: int) -> float | np.ndarray:
        """What each output's onset probability must pass: the per-class
        thresholds where set, else the one onset threshold."""
        if self.class_onset_thresholds is None:
            return self.onset_threshold
        thresholds = np.asarray(self.class_onset_thresholds, np.float32)
        if thresholds.shape != (keys,):
            raise ValueError(f"{thresholds.size} class onset thresholds for {keys} outputs")
        if not ((thresholds >= 0) & (thresholds <= 1)).all():
            raise ValueError("class onset thresholds lie from 0 to 1")
        return thresholds


THRESHOLDS = ("onset_threshold", "frame_threshold", "harmonic_threshold")
CLASS_THRESHOLDS = "onset_threshold_by_class"  # the card's per-class onset thresholds (drums)
HARMONIC_INTERVALS = (12, 19, 24)  # semitones above a played note: octave, twelfth, two octaves
HARMONIC_WINDOW_FRAMES = 2  # how far apart (either way) an onset and its lower note may start


def decode_notes(probs: dict[str, np.ndarray], front_end: FrontEnd, keys: KeySpace,
                 options: DecodeOptions = DecodeOptions(0.5, 0.5), *, program: int = 0
                 ) -> list[Note]:
    """Notes from per-frame predictions, each (frames, keys) in [0, 1]:
    a note starts on the first frame of a run of onsets above the onset
    threshold and lasts while its frame prediction stays above the frame
    threshold (a new onset on the key ends it). A pitched onset run that
    looks like a lower note's partial (see DecodeOptions) is dropped first.
    Its velocity is the velocity head's value at the onset, times 127. A
    drum hit is its onset alone, written DRUM_NOTE_S long (min_note_s does
    not apply)."""
    if options.onset_threshold is None or options.frame_threshold is None:
        raise ValueError("decode_notes needs both thresholds (DecodeOptions.over fills them)")
    # compared in the predictions' type, whether one threshold or one per class
    onsets = probs["onset"] > np.asarray(options.onset_thresholds(probs["onset"].shape[1]),
                                         probs["onset"].dtype)
    if options.harmonic_threshold and not keys.is_drums:
        onsets = drop_harmonic_onsets(probs["onset"], onsets, options.harmonic_threshold)
    active = (probs["frame"] > options.frame_threshold) | onsets
    frames = len(onsets)
    starts = run_starts(onsets)
    notes = []
    for key in np.nonzero(starts.any(axis=0))[0]:
        begin = np.nonzero(starts[:, key])[0]
        silent = np.append(np.nonzero(~active[:, key])[0], frames)  # end of input: silent
        ends = silent[np.searchsorted(silent, begin)]  # the first silent frame after each start
        ends = np.minimum(ends, np.append(begin[1:], frames))
        velocity = np.clip(np.round(probs["velocity"][begin, key] * 127), 1, 127).astype(int)
        for b, e, v in zip(begin, ends, velocity):
            start_s, end_s = b * front_end.frame_s, max(e, b + 1) * front_end.frame_s
            if keys.is_drums:
                notes.append(Note(keys.pitch_of(key), int(v), float(start_s),
                                  float(start_s) + DRUM_NOTE_S, instrument=DRUM_INSTRUMENT,
                                  is_drum=True))
            elif end_s - start_s >= options.min_note_s:
                notes.append(Note(keys.pitch_of(key), int(v), float(start_s), float(end_s),
                                  program=program))
    return sorted(notes, key=lambda n: (n.start_s, n.pitch))


def run_starts(on: np.ndarray) -> np.ndarray:
    """The first frame of each run of True along time, per key."""
    return on & ~np.vstack([np.zeros((1, on.shape[1]), bool), on[:-1]])


def drop_harmonic_onsets(onset_probs: np.ndarray, onsets: np.ndarray, threshold: float
                         ) -> np.ndarray:
    """`onsets` without the runs whose peak is under `threshold` and that
    start within HARMONIC_WINDOW_FRAMES of a run at least as sure
    HARMONIC_INTERVALS below (keys are semitones)."""
    starts = run_starts(onsets)
    peaks = np.zeros(onset_probs.shape, onset_probs.dtype)  # each run's peak, at its start
    for key in np.nonzero(starts.any(axis=0))[0]:
        begin = np.nonzero(starts[:, key])[0]
        in_run = onsets[:, key]
        peaks[begin, key] = np.maximum.reduceat(np.where(in_run, onset_probs[:, key], 0), begin)
    window, frames = HARMONIC_WINDOW_FRAMES, len(peaks)
    padded = np.pad(peaks, ((window, window), (0, 0)))
    nearby = padded[:frames].copy()  # the surest run start within the window, per key
    for shift in range(1, 2 * window + 1):
        np.maximum(nearby, padded[shift:shift + frames], out=nearby)
    del padded
    below = np.zeros(peaks.shape, bool)  # a lower partner starts near and is at least as sure
    for interval in HARMONIC_INTERVALS:
        if interval < peaks.shape[1]:
            below[:, interval:] |= nearby[:, :-interval] >= peaks[:, interval:]
    dropped = starts & below & (peaks < threshold)
    if not dropped.any():
        return onsets
    kept = onsets.copy()
    for key in np.nonzero(dropped.any(axis=0))[0]:  # every frame of a dropped run goes
        run_index = np.cumsum(starts[:, key], dtype=np.int32)  # which run a frame is in
        kept[:, key] &= ~np.isin(run_index, run_index[dropped[:, key]])
    return kept


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
