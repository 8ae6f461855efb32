"""Magenta's monophonic event representations on a 16th-note grid, shared by
training and inference: melodies (Melody RNN, Improv RNN) and drum tracks
(Drums RNN).

A melody is one int per step (`STEPS_PER_QUARTER` = 4, a 16th note):
`NO_EVENT` (-2) continues what was going on (a held note or a rest),
`NOTE_OFF` (-1) ends the sounding note, 0..127 starts a note of that MIDI
pitch (ending any note before it). A drum track is one int per step, the
bitmask of the drum classes struck there (bit i = class i of
`DRUM_TYPE_PITCHES`, 0..511), plus the MIDI velocity of each hit.

Extraction follows note_seq's `extract_melodies` / `extract_drum_tracks`:
a piece is cut into separate lines wherever nothing sounds (melody) or is
struck (drums) for `gap_bars` bars, each line starts on a bar line, and
lines shorter than `min_bars` bars are dropped.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

import numpy as np

from mtools.score import DEFAULT_QPM, Note, Score, TempoMap, extract_melody, nearest_step, quantize

STEPS_PER_QUARTER = 4
NO_EVENT = -2  # melody: the previous note holds, or the rest goes on
NOTE_OFF = -1  # melody: the sounding note ends at this step
DEFAULT_GAP_BARS = 1.0
DEFAULT_MIN_BARS = 7  # Magenta's melody and drums pipelines
DEFAULT_MIN_UNIQUE_PITCHES = 5  # Magenta's melody pipeline (pitch classes)
DEFAULT_VELOCITY = 100  # note_seq's Melody/DrumTrack.to_sequence default

# note_seq's DEFAULT_DRUM_TYPE_PITCHES (note_seq/drums_encoder_decoder.py).
# The first pitch of each class is the one a decoded hit is written as.
DRUM_TYPE_PITCHES: tuple[tuple[int, ...], ...] = (
    (36, 35),                                                     # kick
    (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),  # snare
    (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22),                 # closed hi-hat
    (46, 67, 72, 74, 79, 81, 26),                                 # open hi-hat
    (45, 29, 41, 43, 61, 64, 84),                                 # low tom
    (48, 47, 60, 63, 77, 86, 87),                                 # mid tom
    (50, 30, 62, 76, 83),                                         # high tom
    (49, 52, 55, 57, 58),                                         # crash
    (51, 53, 59, 82),                                             # ride
)
# The older table in magenta/music (and magenta.js): no Roland hi-hat edges
# (22, 26), 43 a high tom, 52 a ride, 58 ... a crash. Same decoded pitches.
MAGENTA_V1_DRUM_TYPE_PITCHES: tuple[tuple[int, ...], ...] = (
    (36, 35),
    (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),
    (42, 44, 54, 68, 69, 70, 71, 73, 78, 80),
    (46, 67, 72, 74, 79, 81),
    (45, 29, 41, 61, 64, 84),
    (48, 47, 60, 63, 77, 86, 87),
    (50, 30, 43, 62, 76, 83),
    (49, 55, 57, 58),
    (51, 52, 53, 59, 82),
)
DRUM_CLASS_NAMES = ("kick", "snare", "closed_hihat", "open_hihat", "low_tom", "mid_tom",
                    "high_tom", "crash", "ride")
NUM_DRUM_CLASSES = len(DRUM_TYPE_PITCHES)
NUM_DRUM_SETS = 2 ** NUM_DRUM_CLASSES  # 512 bitmask values
BASS_PROGRAMS = range(32, 40)  # the General MIDI basses


@dataclass(frozen=True, eq=False)
class GridLine:
    """Events of one line on the grid, and where they come from.

    events: (steps,) int16, one event per grid step.
    steps_per_bar: grid steps in one bar of the piece's meter (16 in 4/4).
    start_step: grid step of events[0] in the source score (a bar line).
    qpm: tempo at the start of the line, quarter notes per minute.
    steps_per_quarter: grid resolution (4 = 16th notes).
    time_signature: (numerator, denominator) the bar length comes from.
    piece: identifier of the source piece (the train/valid split key).
    part: "train" or "valid" when a corpus assigned it, else "".
    """

    events: np.ndarray
    steps_per_bar: int = 16
    start_step: int = 0
    qpm: float = DEFAULT_QPM
    steps_per_quarter: int = STEPS_PER_QUARTER
    time_signature: tuple[int, int] = (4, 4)
    piece: str = ""
    part: str = ""

    @property
    def step_s(self) -> float:
        """Seconds per grid step at this line's tempo."""
        return 60.0 / self.qpm / self.steps_per_quarter


@dataclass(frozen=True, eq=False)
class MelodyLine(GridLine):
    """A melody: events are NO_EVENT / NOTE_OFF / pitch per step; program is
    the General MIDI program of the source instrument."""

    program: int = 0


@dataclass(frozen=True, eq=False)
class DrumTrack(GridLine):
    """Drum hits: events are the bitmask of the classes struck per step;
    velocities (steps, NUM_DRUM_CLASSES) uint8 the MIDI velocity of each
    class's hit (the loudest when several keys of a class coincide), 0 where
    it is not struck (all 0 when not given); offsets (steps, NUM_DRUM_CLASSES)
    float32 where that hit was played relative to its step, in steps
    (-0.5..0.5, early < 0), or None when the timing was not kept."""

    velocities: np.ndarray | None = None
    offsets: np.ndarray | None = None

    def __post_init__(self):
        if self.velocities is None:
            object.__setattr__(self, "velocities",
                               np.zeros((len(self.events), NUM_DRUM_CLASSES), dtype=np.uint8))


@dataclass(frozen=True)
class Grid:
    """A score placed on the grid: its quantized notes and bar length."""

    notes: tuple[Note, ...]
    steps_per_bar: int
    steps_per_quarter: int
    time_signature: tuple[int, int]
    qpm: float


def score_grid(score: Score, steps_per_quarter: int = STEPS_PER_QUARTER, *,
               strict: bool = True) -> Grid | None:
    """Quantize `score` (unless it already is, at this resolution) and find
    its bar length from the first time signature (4/4 when there is none).
    Later meter changes are ignored: the grid keeps the first bar length.
    With `strict`, a meter whose bar is not a whole number of steps gives
    None (note_seq raises NonIntegerStepsPerBarError); else it is rounded."""
    if score.steps_per_quarter != steps_per_quarter:
        score = quantize(score, steps_per_quarter)
    sig = score.time_signatures[0] if score.time_signatures else None
    meter = (sig.numerator, sig.denominator) if sig else (4, 4)
    exact = meter[0] * 4 / meter[1] * steps_per_quarter
    if strict and (exact != int(exact) or exact < 1):
        return None
    return Grid(score.notes, max(int(round(exact)), 1), steps_per_quarter, meter,
                score.qpm_at(0.0))


def _grid_fields(grid: Grid) -> dict:
    """The GridLine fields a grid fixes."""
    return dict(steps_per_bar=grid.steps_per_bar, qpm=grid.qpm,
                steps_per_quarter=grid.steps_per_quarter, time_signature=grid.time_signature)


def total_steps(score: Score, steps_per_quarter: int = STEPS_PER_QUARTER) -> int:
    """The length of `score` in grid steps: its total_s, rounded to the grid."""
    return int(round(TempoMap(score.tempos).quarters_at(score.total_s) * steps_per_quarter))


# --- melodies ---------------------------------------------------------------


class PolyphonicMelodyError(ValueError):
    """Two notes of a line start on one step and polyphony is not ignored."""


class _LineBuilder:
    """note_seq's Melody._add_note: events grow as notes are added in onset
    order; a note that starts while another sounds cuts that one short."""

    def __init__(self):
        self.events: list[int] = []
        self.last_on = -1
        self.last_off = 0

    def add(self, pitch: int, start: int, end: int) -> None:
        end = max(end, start + 1)
        del self.events[end + 1:]
        self.events.extend([NO_EVENT] * (end + 1 - len(self.events)))
        self.events[start] = pitch
        self.events[start + 1:end] = [NO_EVENT] * (end - start - 1)
        self.events[end] = NOTE_OFF
        self.last_on, self.last_off = start, end


def _line_from(notes: list[Note], search: int, steps_per_bar: int, gap_bars: float,
               ignore_polyphony: bool) -> tuple[list[int], int]:
    """One line from `notes` (sorted by onset, then pitch descending; all at
    or after `search`): (events, origin step). Stops at the first silence of
    `gap_bars` bars; the final NOTE_OFF is stripped, as note_seq does."""
    if not notes:
        return [], search
    first = notes[0].start_step
    origin = first - (first - search) % steps_per_bar
    line = _LineBuilder()
    for note in notes:
        start = note.start_step - origin
        if line.events:
            if start == line.last_on:
                if ignore_polyphony:
                    continue  # the higher note, sorted first, is kept
                raise PolyphonicMelodyError(f"two notes start at step {note.start_step}")
            if start - line.last_off >= gap_bars * steps_per_bar:
                break
        line.add(note.pitch, start, note.end_step - origin)
    if line.events and line.events[-1] == NOTE_OFF:
        line.events.pop()
    return line.events, origin


def score_to_melodies(score: Score, *, steps_per_quarter: int = STEPS_PER_QUARTER,
                      gap_bars: float = DEFAULT_GAP_BARS, min_bars: int = DEFAULT_MIN_BARS,
                      min_unique_pitches: int = DEFAULT_MIN_UNIQUE_PITCHES,
                      max_steps: int | None = None, ignore_polyphony: bool = True,
                      instruments: tuple[int, ...] | None = None,
                      piece: str = "") -> list[MelodyLine]:
    """Monophonic lines of a score, note_seq's `extract_melodies`: per
    instrument (drums and zero-velocity notes left out, or only those in
    `instruments`), notes starting on one step keep the highest (or, without
    `ignore_polyphony`, the instrument is skipped); a silence of `gap_bars`
    bars ends a line and the next starts on the following bar line. Lines
    shorter than `min_bars` bars or with fewer than `min_unique_pitches`
    pitch classes are dropped; `max_steps` truncates. A meter whose bar is
    not whole steps yields no lines."""
    grid = score_grid(score, steps_per_quarter)
    if grid is None:
        return []
    by_instrument: dict[int, list[Note]] = {}
    for note in grid.notes:
        if not note.is_drum and note.velocity > 0 and (
                instruments is None or note.instrument in instruments):
            by_instrument.setdefault(note.instrument, []).append(note)
    lines = []
    for instrument, notes in sorted(by_instrument.items()):
        notes.sort(key=lambda n: (n.start_step, -n.pitch))
        try:
            lines += _instrument_lines(notes, grid, gap_bars, ignore_polyphony)
        except PolyphonicMelodyError:
            continue
    kept = []
    for events, origin, program in lines:
        if len(events) < grid.steps_per_bar * min_bars:
            continue
        events = events[:max_steps] if max_steps else events
        pitches = np.asarray(events)
        if len(np.unique(pitches[pitches >= 0] % 12)) < min_unique_pitches:
            continue
        kept.append(MelodyLine(np.asarray(events, dtype=np.int16), program=program,
                               start_step=origin, piece=piece, **_grid_fields(grid)))
    return kept


def _instrument_lines(notes: list[Note], grid: Grid, gap_bars: float, ignore_polyphony: bool):
    """All lines of one instrument's sorted notes: (events, origin, program)."""
    starts = [n.start_step for n in notes]
    search, lines = 0, []
    while True:
        rest = notes[bisect.bisect_left(starts, search):]
        events, origin = _line_from(rest, search, grid.steps_per_bar, gap_bars, ignore_polyphony)
        if not events:
            return lines
        lines.append((events, origin, rest[0].program))
        end = origin + len(events)
        search = end + (search - end) % grid.steps_per_bar


def notes_to_melody(notes, num_steps: int) -> np.ndarray:
    """Melody events (num_steps,) int16 from quantized notes (start_step and
    end_step set), placed from step 0. Notes are added in onset order as
    note_seq does (a later onset cuts a sounding note; of notes starting
    together the highest wins). Anything past num_steps is cut off."""
    line = _LineBuilder()
    for note in sorted(notes, key=lambda n: (n.start_step, -n.pitch)):
        if note.start_step >= num_steps or note.start_step == line.last_on:
            continue
        line.add(note.pitch, note.start_step, note.end_step)
    return set_melody_length(np.asarray(line.events, dtype=np.int16), num_steps)


def set_melody_length(events: np.ndarray, num_steps: int) -> np.ndarray:
    """note_seq's Melody.set_length: cut to num_steps, or pad with NO_EVENT,
    ending a note that was still sounding at the old end with a NOTE_OFF
    there. (steps,) → (num_steps,) int16."""
    events = np.asarray(events, dtype=np.int16)
    if num_steps <= len(events):
        return events[:num_steps].copy()
    out = np.full(num_steps, NO_EVENT, dtype=np.int16)
    out[:len(events)] = events
    marked = np.flatnonzero(events != NO_EVENT)
    if len(marked) and events[marked[-1]] >= 0:
        out[len(events)] = NOTE_OFF
    return out


def primer_melody(score: Score, *, steps_per_quarter: int = STEPS_PER_QUARTER,
                  num_steps: int | None = None) -> MelodyLine:
    """The top line of the whole input as one line for a model to continue:
    quantized, the highest sounding note wins (score.extract_melody), no
    splitting at gaps, events from step 0 (the score's start) to its end, or
    to `num_steps` (padded as set_melody_length does)."""
    grid = score_grid(score, steps_per_quarter, strict=False)
    line = extract_melody(replace(score, notes=grid.notes, steps_per_quarter=steps_per_quarter))
    if num_steps is None:
        num_steps = max([total_steps(score, steps_per_quarter)]
                        + [n.end_step for n in line.notes])
    events = notes_to_melody(line.notes, num_steps)
    program = line.notes[-1].program if line.notes else 0
    return MelodyLine(events, program=program, **_grid_fields(grid))


def melody_to_notes(events: np.ndarray, *, step_s: float, start_s: float = 0.0,
                    velocity: int = DEFAULT_VELOCITY, program: int = 0,
                    instrument: int = 0) -> list[Note]:
    """Notes of a melody whose events[0] sounds at `start_s` seconds, each
    step `step_s` seconds long (note_seq's Melody.to_sequence: a note lasts
    until the next onset or NOTE_OFF, or the end of the events)."""
    events = np.asarray(events)
    marks = np.flatnonzero(events != NO_EVENT)
    notes = []
    for i, step in enumerate(marks):
        if events[step] < 0:
            continue
        end = marks[i + 1] if i + 1 < len(marks) else len(events)
        notes.append(Note(int(events[step]), velocity, start_s + step * step_s,
                          start_s + end * step_s, program, instrument))
    return notes


def melody_major_key(events: np.ndarray) -> int:
    """note_seq's Melody.get_major_key: the major key (0 = C .. 11 = B)
    whose scale holds the most of the melody's notes; lowest wins ties."""
    events = np.asarray(events)
    histogram = np.bincount(events[events >= 0] % 12, minlength=12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    return int(np.argmax([histogram[(scale + key) % 12].sum() for key in range(12)]))


def transpose_melody(events: np.ndarray, semitones: int, min_note: int = 0,
                     max_note: int = 128) -> np.ndarray:
    """note_seq's Melody.transpose: pitches move by `semitones`, then any
    outside [min_note, max_note) are octave-shifted inside. Returns a copy."""
    events = np.asarray(events, dtype=np.int16).copy()
    pitched = events >= 0
    moved = events[pitched].astype(np.int64) + semitones
    low, high = moved < min_note, moved >= max_note
    moved[low] = min_note + (moved[low] - min_note) % 12
    moved[high] = max_note - 12 + (moved[high] - max_note) % 12
    events[pitched] = moved
    return events


def squash_melody(events: np.ndarray, min_note: int, max_note: int,
                  transpose_to_key: int | None = None) -> tuple[np.ndarray, int]:
    """note_seq's Melody.squash: transpose into `transpose_to_key` (major
    key, 0 = C; None keeps the key) choosing the octave that centres the
    melody in [min_note, max_note), then fold stray notes into that range.
    Returns (events, semitones moved)."""
    events = np.asarray(events, dtype=np.int16)
    pitches = events[events >= 0]
    if transpose_to_key is None or not len(pitches):
        return transpose_melody(events, 0, min_note, max_note), 0
    key_diff = transpose_to_key - melody_major_key(events)
    centre_diff = (min_note + max_note - 1) / 2 - ((int(pitches.min()) + int(pitches.max())) / 2
                                                  + key_diff)
    amount = key_diff + 12 * int(round(centre_diff / 12.0))
    return transpose_melody(events, amount, min_note, max_note), amount


# --- drums --------------------------------------------------------------------


def drum_class_table(type_pitches=DRUM_TYPE_PITCHES) -> np.ndarray:
    """(128,) int8: the drum class of each MIDI key, -1 for keys in no class."""
    table = np.full(128, -1, dtype=np.int8)
    for index, pitches in enumerate(type_pitches):
        table[list(pitches)] = index
    return table


_CLASS_OF = drum_class_table()


def drum_class(pitch: int) -> int | None:
    """The class (0..8) a GM drum key belongs to, None when it is in none."""
    found = int(_CLASS_OF[pitch]) if 0 <= pitch < 128 else -1
    return None if found < 0 else found


def drum_bitmask(pitches) -> int:
    """Bitmask of the classes of some drum keys struck together (note_seq's
    MultiDrumOneHotEncoding.encode_event; unknown keys are ignored)."""
    return sum(1 << c for c in {drum_class(p) for p in pitches} if c is not None)


def bitmask_pitches(mask: int, type_pitches=DRUM_TYPE_PITCHES) -> list[int]:
    """The canonical GM key (first of its class) of each class in `mask`."""
    return [pitches[0] for i, pitches in enumerate(type_pitches) if mask >> i & 1]


def score_to_drum_tracks(score: Score, *, steps_per_quarter: int = STEPS_PER_QUARTER,
                         gap_bars: float = DEFAULT_GAP_BARS, min_bars: int = DEFAULT_MIN_BARS,
                         max_steps: int | None = None, type_pitches=DRUM_TYPE_PITCHES,
                         piece: str = "", timing: bool = False,
                         pad_end: bool = False) -> list[DrumTrack]:
    """Drum tracks of a score, note_seq's `extract_drum_tracks`: every drum
    note (is_drum, velocity > 0) of every instrument, grouped by onset step;
    `gap_bars` bars without a hit end a track, the next starts on the
    following bar line; tracks shorter than `min_bars` bars are dropped and
    `max_steps` truncates. Keys in no class still count as hits for the
    track's extent (as in note_seq) but set no bit. With `timing`, each
    track keeps its hits' offsets from the grid (GrooVAE's microtiming);
    with `pad_end` (note_seq's pad_end), a track runs to the end of its
    last bar, so a 2-bar loop is 2 bars long."""
    grid = score_grid(score, steps_per_quarter)
    if grid is None:
        return []
    hits = _drum_hits(score, grid, steps_per_quarter, timing)
    if not hits:
        return []
    table = drum_class_table(type_pitches)
    steps = np.array([h[0] for h in hits], dtype=np.int64)
    onsets = np.unique(steps)
    tracks, search = [], 0
    while True:
        first = bisect.bisect_left(onsets, search)
        if first == len(onsets):
            return tracks
        origin, length = _drum_span(onsets[first:], search, grid.steps_per_bar, gap_bars)
        end = origin + length
        if pad_end:
            length = -(-length // grid.steps_per_bar) * grid.steps_per_bar
        if length >= grid.steps_per_bar * min_bars:
            keep = min(length, max_steps) if max_steps else length
            lo, hi = bisect.bisect_left(steps, origin), bisect.bisect_left(steps, origin + keep)
            events, velocities, offsets = _drum_rows(hits[lo:hi], origin, keep, table)
            tracks.append(DrumTrack(events, velocities=velocities, start_step=origin,
                                    offsets=offsets if timing else None, piece=piece,
                                    **_grid_fields(grid)))
        search = end + (search - end) % grid.steps_per_bar


def _drum_span(onsets: np.ndarray, search: int, steps_per_bar: int,
               gap_bars: float) -> tuple[int, int]:
    """(origin step, length in steps) of the track that starts at onsets[0]:
    it ends one step after the last onset before a gap of `gap_bars` bars."""
    origin = int(onsets[0] - (onsets[0] - search) % steps_per_bar)
    gaps = np.flatnonzero(np.diff(onsets) - 1 >= gap_bars * steps_per_bar)
    last = onsets[gaps[0]] if len(gaps) else onsets[-1]
    return origin, int(last - origin + 1)


def _drum_hits(score: Score, grid: Grid, steps_per_quarter: int, timing: bool) -> list[tuple]:
    """(step, pitch, velocity, offset) of every drum hit, sorted; the offset
    (where it was played relative to the step, in steps) is 0 unless
    `timing`, which reads it from the unquantized notes."""
    if not timing or score.steps_per_quarter == steps_per_quarter:
        return sorted((n.start_step, n.pitch, n.velocity, 0.0) for n in grid.notes
                      if n.is_drum and n.velocity > 0)
    tempo = TempoMap(score.tempos)
    hits = []
    for note in score.notes:
        if note.is_drum and note.velocity > 0:
            exact = tempo.quarters_at(note.start_s) * steps_per_quarter
            step = nearest_step(exact)
            hits.append((step, note.pitch, note.velocity, exact - step))
    return sorted(hits)


def _drum_rows(hits, origin: int, length: int, table: np.ndarray):
    """Bitmask events (length,), velocities (length, classes) and offsets
    (length, classes) of hits (step, pitch, velocity, offset) that fall in
    [origin, origin + length); the loudest hit of a class at a step wins."""
    events = np.zeros(length, dtype=np.int16)
    velocities = np.zeros((length, NUM_DRUM_CLASSES), dtype=np.uint8)
    offsets = np.zeros((length, NUM_DRUM_CLASSES), dtype=np.float32)
    for step, pitch, velocity, offset in hits:
        index = table[pitch]
        if index >= 0:
            events[step - origin] |= 1 << int(index)
            row = velocities[step - origin]
            if velocity > row[index]:
                row[index] = min(velocity, 127)
                offsets[step - origin, index] = offset
    return events, velocities, offsets


def primer_drum_track(score: Score, *, steps_per_quarter: int = STEPS_PER_QUARTER,
                      num_steps: int | None = None, timing: bool = False) -> DrumTrack:
    """All drum hits of the input as one track from step 0 (no splitting at
    gaps) to the score's end or `num_steps`, for a model to continue (with
    the hits' offsets from the grid when `timing`)."""
    grid = score_grid(score, steps_per_quarter, strict=False)
    hits = _drum_hits(score, grid, steps_per_quarter, timing)
    if num_steps is None:
        num_steps = max([total_steps(score, steps_per_quarter)] + [h[0] + 1 for h in hits])
    events, velocities, offsets = _drum_rows([h for h in hits if h[0] < num_steps], 0, num_steps,
                                             _CLASS_OF)
    return DrumTrack(events, velocities=velocities, offsets=offsets if timing else None,
                     **_grid_fields(grid))


def drums_to_notes(events: np.ndarray, *, step_s: float, start_s: float = 0.0,
                   velocities: np.ndarray | None = None, velocity: int = DEFAULT_VELOCITY,
                   program: int = 0, instrument: int = 9,
                   type_pitches=DRUM_TYPE_PITCHES) -> list[Note]:
    """Drum notes (is_drum, so MIDI channel 10) of bitmask events whose
    events[0] sounds at `start_s`: each class struck is written as its
    canonical key for one step. `velocities` (steps, classes) gives each
    hit's velocity; where it is 0 or absent, `velocity` is used."""
    events = np.asarray(events)
    notes = []
    for step in np.flatnonzero(events):
        for index in range(len(type_pitches)):
            if events[step] >> index & 1:
                vel = int(velocities[step, index]) if velocities is not None else 0
                start = start_s + step * step_s
                notes.append(Note(type_pitches[index][0], vel or velocity, start, start + step_s,
                                  program, instrument, True))
    return notes
