"""The one note data model of mtools, and the transforms over it.

Times are seconds from the start of the piece (`*_s`), as in note_seq's
NoteSequence; a quantized score also carries grid positions (`*_step`) on a
`steps_per_quarter` grid. Every value type is a frozen dataclass and every
transform returns a new value.

Field meanings follow note_seq's `music.proto` so JSONL round-trips with it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

DEFAULT_QPM = 120.0
DEFAULT_TICKS_PER_QUARTER = 220  # note_seq's STANDARD_PPQ
SUSTAIN_CC = 64
PEDAL_DOWN_MIN_VALUE = 64  # a CC64 value >= this holds the pedal down


@dataclass(frozen=True, slots=True)
class Note:
    """One sounding note.

    pitch: MIDI key number, 0..127 (60 = middle C).
    velocity: MIDI velocity, 1..127.
    start_s, end_s: onset and release in seconds, end_s > start_s.
    program: General MIDI program, 0..127 (0 = acoustic grand piano).
    instrument: track/part index the note belongs to (note_seq's `instrument`).
    is_drum: True for percussion (MIDI channel 10); pitch is then a GM drum key.
    start_step, end_step: grid positions when the score is quantized, else None.
    """

    pitch: int
    velocity: int
    start_s: float
    end_s: float
    program: int = 0
    instrument: int = 0
    is_drum: bool = False
    start_step: int | None = None
    end_step: int | None = None


@dataclass(frozen=True, slots=True)
class Tempo:
    """A tempo change: `qpm` quarter notes per minute from `time_s` on."""

    time_s: float
    qpm: float


@dataclass(frozen=True, slots=True)
class TimeSignature:
    """A meter change at `time_s`: numerator / denominator (e.g. 6/8)."""

    time_s: float
    numerator: int = 4
    denominator: int = 4


@dataclass(frozen=True, slots=True)
class KeySignature:
    """A key change at `time_s`. key: pitch class of the tonic, 0..11 (C = 0);
    mode: 0 major, 1 minor (note_seq's enum order)."""

    time_s: float
    key: int = 0
    mode: int = 0


@dataclass(frozen=True, slots=True)
class ChordSymbol:
    """A chord symbol such as "Am7" or "G/B" sounding from `time_s` on
    (note_seq stores these as CHORD_SYMBOL text annotations)."""

    time_s: float
    figure: str


@dataclass(frozen=True, slots=True)
class ControlChange:
    """A MIDI control change. number, value: 0..127 (64 = sustain pedal)."""

    time_s: float
    number: int
    value: int
    program: int = 0
    instrument: int = 0
    is_drum: bool = False


@dataclass(frozen=True, slots=True)
class PitchBend:
    """A MIDI pitch bend; bend: -8192..8191, 0 = no bend."""

    time_s: float
    bend: int
    program: int = 0
    instrument: int = 0
    is_drum: bool = False


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """A name for an instrument (track) index, e.g. from a MIDI track name."""

    instrument: int
    name: str


@dataclass(frozen=True, slots=True)
class Score:
    """A whole piece. Lists are sorted by time. total_s is the end of the last
    note (or later, if the source said so). ticks_per_quarter is the MIDI
    resolution the piece came with, kept so a MIDI round trip is exact to the
    tick. steps_per_quarter is set when the notes carry grid positions.
    `provenance` holds mtools' own metadata (model, seed, ...): it is written
    under one extra JSONL key, "mtools", which note_seq's JSON parser skips
    when given ignore_unknown_fields=True (lines without it parse strictly),
    and in MIDI as a text event "mtools:{...}" at tick 0."""

    notes: tuple[Note, ...] = ()
    tempos: tuple[Tempo, ...] = ()
    time_signatures: tuple[TimeSignature, ...] = ()
    key_signatures: tuple[KeySignature, ...] = ()
    chords: tuple[ChordSymbol, ...] = ()
    control_changes: tuple[ControlChange, ...] = ()
    pitch_bends: tuple[PitchBend, ...] = ()
    instrument_infos: tuple[InstrumentInfo, ...] = ()
    ticks_per_quarter: int = DEFAULT_TICKS_PER_QUARTER
    total_s: float = 0.0
    steps_per_quarter: int | None = None
    title: str = ""
    provenance: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_quantized(self) -> bool:
        return self.steps_per_quarter is not None

    def qpm_at(self, time_s: float = 0.0) -> float:
        """Tempo in force at `time_s` (DEFAULT_QPM when the score has none)."""
        qpm = DEFAULT_QPM
        for tempo in self.tempos:
            if tempo.time_s > time_s + 1e-9:
                break
            qpm = tempo.qpm
        return qpm


def make_score(notes: Iterable[Note], **fields) -> Score:
    """Build a Score from notes (any order), sorting everything by time and
    setting total_s to the last note end unless given."""
    ordered = tuple(sorted(notes, key=_note_order))
    fields.setdefault("total_s", max((n.end_s for n in ordered), default=0.0))
    for name in ("tempos", "time_signatures", "key_signatures", "chords",
                 "control_changes", "pitch_bends"):
        if name in fields:
            fields[name] = tuple(sorted(fields[name], key=lambda e: e.time_s))
    if "instrument_infos" in fields:
        fields["instrument_infos"] = tuple(fields["instrument_infos"])
    return Score(notes=ordered, **fields)


def _note_order(note: Note) -> tuple:
    return (note.start_s, note.instrument, note.pitch, note.end_s)


def with_notes(score: Score, notes: Iterable[Note]) -> Score:
    """The same score with other notes; total_s grows to cover them."""
    ordered = tuple(sorted(notes, key=_note_order))
    total = max([score.total_s if score.notes else 0.0] + [n.end_s for n in ordered])
    return replace(score, notes=ordered, total_s=total)


def melody_from_text(text: str, *, qpm: float = DEFAULT_QPM, steps_per_quarter: int = 4,
                     velocity: int = 90, program: int = 0, instrument: int = 0) -> Score:
    """A monophonic score from text, one token per grid step: a MIDI pitch
    (0-127) starts a note, "_" holds the previous note one more step, "-"
    is a rest step. E.g. "60 _ 62 - 64" at 120 qpm in 16ths. Empty text is
    an empty score (with the tempo and a 4/4 time signature). A bad token
    raises InputFormatError naming it."""
    from mtools.errors import InputFormatError

    step_s = 60.0 / qpm / steps_per_quarter
    spans: list[list] = []  # [pitch, start_s, end_s]
    for step, token in enumerate(text.replace(",", " ").split()):
        if token == "_":
            if not spans or spans[-1][2] < step * step_s - 1e-9:
                raise InputFormatError(f"primer token {step + 1} is '_' but no note sounds")
            spans[-1][2] += step_s
        elif token != "-":
            if not _is_midi_number(token):
                raise InputFormatError(
                    f"primer token {step + 1} is {token!r}: give MIDI pitches 0-127, '_' or '-'")
            spans.append([int(token), step * step_s, (step + 1) * step_s])
    notes = [Note(p, velocity, start, end, program, instrument) for p, start, end in spans]
    return make_score(notes, tempos=[Tempo(0.0, qpm)], time_signatures=[TimeSignature(0.0, 4, 4)])


def _is_midi_number(token: str) -> bool:
    """"0" … "127" in ASCII digits ("²".isdigit() is true, and int() refuses it)."""
    return token.isascii() and token.isdigit() and 0 <= int(token) <= 127


def drums_from_text(text: str, *, qpm: float = DEFAULT_QPM, steps_per_quarter: int = 4,
                    velocity: int = 90) -> Score:
    """A drum part from text, one token per grid step: General MIDI drum
    pitches joined by "+" are struck together ("36+42"), "-" (or "_") is a
    step with no hit. E.g. "36+42 42 38+42 42". Each hit lasts one step.
    A bad token raises InputFormatError naming it."""
    from mtools.errors import InputFormatError

    step_s = 60.0 / qpm / steps_per_quarter
    notes = []
    for step, token in enumerate(text.replace(",", " ").split()):
        if token in ("-", "_"):
            continue
        pitches = token.split("+")
        if not all(_is_midi_number(p) for p in pitches):
            raise InputFormatError(f"primer token {step + 1} is {token!r}: give drum pitches "
                                   "0-127 (several joined by '+'), or '-'")
        notes += [Note(int(p), velocity, step * step_s, (step + 1) * step_s, is_drum=True)
                  for p in dict.fromkeys(pitches)]
    return make_score(notes, tempos=[Tempo(0.0, qpm)], time_signatures=[TimeSignature(0.0, 4, 4)])


# --- tempo map ---------------------------------------------------------------


class TempoMap:
    """Converts between seconds and quarter-note positions under a score's
    tempo changes (piecewise-constant qpm)."""

    def __init__(self, tempos: Sequence[Tempo]):
        changes = [t for t in tempos if t.qpm > 0]
        if not changes or changes[0].time_s > 1e-9:
            changes.insert(0, Tempo(0.0, DEFAULT_QPM))  # as MIDI: 120 until told
        self._times_s = [t.time_s for t in changes]
        self._qpms = [t.qpm for t in changes]
        self._quarters = [0.0]
        for i in range(1, len(changes)):
            span_s = self._times_s[i] - self._times_s[i - 1]
            self._quarters.append(self._quarters[-1] + span_s * self._qpms[i - 1] / 60.0)

    def quarters_at(self, time_s: float) -> float:
        """Quarter notes elapsed from 0 s to `time_s`."""
        i = max(bisect.bisect_right(self._times_s, time_s) - 1, 0)
        return self._quarters[i] + (time_s - self._times_s[i]) * self._qpms[i] / 60.0

    def seconds_at(self, quarters: float) -> float:
        """Inverse of quarters_at."""
        i = max(bisect.bisect_right(self._quarters, quarters) - 1, 0)
        return self._times_s[i] + (quarters - self._quarters[i]) * 60.0 / self._qpms[i]


# --- quantization ------------------------------------------------------------


def quantize(score: Score, steps_per_quarter: int = 4) -> Score:
    """Snap notes to a grid of `steps_per_quarter` steps per quarter note,
    following the score's tempo map. Notes get start_step/end_step and their
    seconds move onto the grid; a note never shrinks below one step. Other
    events keep their times."""
    tmap = TempoMap(score.tempos)
    notes = []
    for note, (start, end) in zip(score.notes, grid_steps(score, steps_per_quarter)):
        notes.append(replace(
            note, start_step=start, end_step=end,
            start_s=tmap.seconds_at(start / steps_per_quarter),
            end_s=tmap.seconds_at(end / steps_per_quarter)))
    quantized = with_notes(replace(score, steps_per_quarter=steps_per_quarter), notes)
    return replace(quantized, total_s=max((n.end_s for n in notes), default=0.0))


def grid_steps(score: Score, steps_per_quarter: int = 4) -> list[tuple[int, int]]:
    """(start_step, end_step) of each of score.notes, in order, as `quantize`
    places them (end at least one step after start)."""
    if steps_per_quarter <= 0:
        raise ValueError("steps_per_quarter must be positive")
    tmap = TempoMap(score.tempos)
    steps = []
    for note in score.notes:
        start = nearest_step(tmap.quarters_at(note.start_s) * steps_per_quarter)
        steps.append((start, max(nearest_step(tmap.quarters_at(note.end_s) * steps_per_quarter),
                                 start + 1)))
    return steps


def nearest_step(steps: float) -> int:
    """The nearest grid step, halves rounding up as note_seq's
    quantize_to_step does (Python's round() would round halves to even)."""
    return math.floor(steps + 0.5)


def unquantize(score: Score, qpm: float | None = None) -> Score:
    """Place a quantized score's steps in seconds: under `qpm` when given
    (replacing the tempo map with that one tempo), else under the score's own
    tempo map. The result carries no grid positions."""
    if score.steps_per_quarter is None:
        raise ValueError("score is not quantized")
    spq = score.steps_per_quarter
    tempos = (Tempo(0.0, qpm),) if qpm else score.tempos
    tmap = TempoMap(tempos)
    notes = [replace(n, start_s=tmap.seconds_at(n.start_step / spq),
                     end_s=tmap.seconds_at(n.end_step / spq),
                     start_step=None, end_step=None)
             for n in score.notes]
    plain = replace(score, notes=tuple(sorted(notes, key=_note_order)),
                    tempos=tuple(tempos) if tempos else (Tempo(0.0, DEFAULT_QPM),),
                    steps_per_quarter=None)
    return replace(plain, total_s=max((n.end_s for n in notes), default=0.0))


# --- transforms ----------------------------------------------------------------


def transpose(score: Score, semitones: int, *, min_pitch: int = 0,
              max_pitch: int = 127) -> Score:
    """Shift every pitched (non-drum) note by `semitones`. Raises ValueError
    if a note would leave [min_pitch, max_pitch]."""
    notes = []
    for note in score.notes:
        if note.is_drum:
            notes.append(note)
            continue
        pitch = note.pitch + semitones
        if not min_pitch <= pitch <= max_pitch:
            raise ValueError(f"transposing by {semitones} puts pitch {note.pitch} "
                             f"outside {min_pitch}..{max_pitch}")
        notes.append(replace(note, pitch=pitch))
    keys = tuple(replace(k, key=(k.key + semitones) % 12) for k in score.key_signatures)
    return replace(score, notes=tuple(notes), key_signatures=keys)


def extract_melody(score: Score, *, instrument: int | None = None) -> Score:
    """The top line of the pitched notes (a "skyline"): at every moment the
    highest sounding pitch wins. A note is kept when nothing higher is
    sounding at its onset; the kept note before it is cut there. With
    `instrument`, only that track is considered. Drums are ignored. The result
    is monophonic: no two notes overlap."""
    candidates = [n for n in score.notes if not n.is_drum
                  and (instrument is None or n.instrument == instrument)]
    # At equal onsets the highest pitch comes first and wins.
    candidates.sort(key=lambda n: (n.start_s, -n.pitch))
    line: list[Note] = []
    sounding: list[Note] = []
    for note in candidates:
        sounding = [n for n in sounding if n.end_s > note.start_s + 1e-9]
        covered = any(n.pitch >= note.pitch for n in sounding)
        sounding.append(note)
        if covered:
            continue
        if line and line[-1].end_s > note.start_s:
            line[-1] = replace(line[-1], end_s=note.start_s, end_step=note.start_step)
        line.append(note)
    return with_notes(replace(score, notes=()), line)


def pedal_intervals(score: Score) -> dict[tuple[int, bool], list[tuple[float, float]]]:
    """Sustain-pedal-down intervals in seconds, per (instrument, is_drum)."""
    intervals: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    down_since: dict[tuple[int, bool], float] = {}
    for cc in score.control_changes:
        if cc.number != SUSTAIN_CC:
            continue
        track = (cc.instrument, cc.is_drum)
        down = cc.value >= PEDAL_DOWN_MIN_VALUE
        if down and track not in down_since:
            down_since[track] = cc.time_s
        elif not down and track in down_since:
            intervals.setdefault(track, []).append((down_since.pop(track), cc.time_s))
    end = max(score.total_s, max((n.end_s for n in score.notes), default=0.0))
    for track, since in down_since.items():
        intervals.setdefault(track, []).append((since, max(end, since)))
    return intervals


def apply_sustain(score: Score) -> Score:
    """Lengthen notes held by the sustain pedal, as a listener hears them: a
    note released while the pedal is down sounds until the pedal lifts, or
    until the same key is struck again on the same track, whichever is first.
    The pedal events themselves are kept."""
    pedals = pedal_intervals(score)
    if not pedals:
        return score
    next_onset: dict[int, float] = {}
    by_key: dict[tuple[int, bool, int], list[int]] = {}
    for i, note in enumerate(score.notes):
        by_key.setdefault((note.instrument, note.is_drum, note.pitch), []).append(i)
    for indices in by_key.values():
        for a, b in zip(indices, indices[1:]):
            next_onset[a] = score.notes[b].start_s
    notes = []
    for i, note in enumerate(score.notes):
        end = note.end_s
        for down_s, up_s in pedals.get((note.instrument, note.is_drum), ()):
            if down_s <= note.end_s < up_s:
                end = up_s
                break
        # A re-strike of the key cuts the pedal tail, never the note itself.
        end = max(note.end_s, min(end, next_onset.get(i, math.inf)))
        notes.append(replace(note, end_s=end))
    return with_notes(score, notes)


def trim(score: Score, start_s: float, end_s: float) -> Score:
    """Notes that start in [start_s, end_s), shifted to begin at 0 and cut at
    the window's end; tempos and meters in force are carried over."""
    def inside(events):
        kept = [e for e in events if start_s <= e.time_s < end_s]
        before = [e for e in events if e.time_s < start_s]
        if before and (not kept or kept[0].time_s > start_s):
            kept.insert(0, replace(before[-1], time_s=start_s))
        return tuple(replace(e, time_s=e.time_s - start_s) for e in kept)

    notes = [replace(n, start_s=n.start_s - start_s, end_s=min(n.end_s, end_s) - start_s,
                     start_step=None, end_step=None)
             for n in score.notes if start_s <= n.start_s < end_s]
    trimmed = replace(score, tempos=inside(score.tempos),
                      time_signatures=inside(score.time_signatures),
                      key_signatures=inside(score.key_signatures),
                      chords=inside(score.chords),
                      control_changes=inside(score.control_changes),
                      pitch_bends=inside(score.pitch_bends),
                      steps_per_quarter=None, notes=())
    return replace(with_notes(trimmed, notes), total_s=end_s - start_s)


def transform(score: Score, *, transpose_semitones: int = 0, melody: bool = False,
              sustain: bool = False, steps_per_quarter: int | None = None) -> Score:
    """The edits `mtools convert` offers, applied in a fixed order: pedal
    first (it changes what sounds), then the grid (so near-simultaneous
    onsets become simultaneous and the top line takes the higher one), then
    the top line, then transposition."""
    if sustain:
        score = apply_sustain(score)
    if steps_per_quarter:
        score = quantize(score, steps_per_quarter)
    if melody:
        score = extract_melody(score)
    if transpose_semitones:
        score = transpose(score, transpose_semitones)
    return score
