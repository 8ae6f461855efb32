"""`harmonize` and `infill`: scores ⇄ four-voice grids, and the dispatch to
the model that fills the cells. Coconet is the one model so far; the
families a card may name are in FAMILIES, each played through
`mtools.models.coconet.generate`'s contract (fill the free cells, keep the
rest).

Harmonize takes the top line of whatever comes in as the soprano, shifts
it into the model's soprano range and back, and writes four named tracks
over the span the melody covers. Infill reads a four-part score,
regenerates the cells inside the mask, and keeps every note outside it as
it was.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace

import numpy as np

from mtools.errors import InputFormatError, UsageError
from mtools.models.coconet import REST, ChoraleSpace, Coconet, GibbsOptions, generate
from mtools.models.sampling import numbered_takes, seeded
from mtools.score import (InstrumentInfo, Note, Score, TempoMap, extract_melody, grid_steps,
                          quantize, with_notes)

HARMONIZE, INFILL = "harmonize", "infill"
FAMILIES = frozenset({"coconet"})
SOPRANO_CENTRE = 70  # the middle of the Bach sopranos' range (60-81)
MAX_WINDOW_STEPS = 512  # longer pieces are filled in overlapping windows of this many steps
WINDOW_OVERLAP_STEPS = 64  # (less than half of MAX_WINDOW_STEPS)
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")


@dataclass(frozen=True)
class FillOptions:
    """What harmonize/infill take besides the input (see their --help)."""

    model: str = "coconet"
    sampling: GibbsOptions = GibbsOptions()
    num_outputs: int = 1
    seed: int | None = None
    program: int = 0
    device: str | None = None
    start: str | None = None  # infill: where the region starts ("5" bar, "12.5s" seconds)
    end: str | None = None
    voices: tuple[int, ...] = ()  # infill: voice indices, 0 = soprano


@dataclass
class FillResult:
    scores: list[Score]
    warnings: list[str] = field(default_factory=list)


# --- the model -------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load(model: str, task: str, device: str | None) -> tuple[Coconet, object]:
    """The model, loaded once per process (a JSONL input holds many scores)."""
    from mtools.models.registry import resolve_model

    ref = resolve_model(model, task=task)
    if ref.card.name not in FAMILIES:
        raise UsageError(f"model {ref.card.spec} is not a model `{task}` knows how to play",
                         hint=f"{task} plays {', '.join(sorted(FAMILIES))}")
    return Coconet.from_ref(ref, device=device), ref


def fill(model: Coconet, chorales: np.ndarray, free: np.ndarray, options: FillOptions,
         rng: np.random.Generator) -> np.ndarray:
    """Fill the free cells: the whole piece at once when it is short, else
    window by window. Each window after the first begins with
    WINDOW_OVERLAP_STEPS of fixed context from the one before, then
    WINDOW_OVERLAP_STEPS that window left free, which it samples again now
    that what follows is in view."""
    steps, overlap = chorales.shape[1], WINDOW_OVERLAP_STEPS
    if steps <= MAX_WINDOW_STEPS:
        return generate(model, chorales, free, options.sampling, rng)
    result, free = chorales.copy(), free.copy()
    start = 0
    while True:
        end = min(steps, start + MAX_WINDOW_STEPS)
        result[:, start:end] = generate(model, result[:, start:end], free[:, start:end],
                                        options.sampling, rng)
        if end == steps:
            return result
        free[:, start:end - overlap] = False
        start = end - 2 * overlap


def fold(pitches: np.ndarray, low: int, high: int) -> np.ndarray:
    """Pitches moved by whole octaves into [low, high] (REST stays REST)."""
    folded = pitches.astype(np.int64).copy()
    rest = pitches == REST
    while (below := (folded < low) & ~rest).any():
        folded[below] += 12
    while (above := (folded > high) & ~rest).any():
        folded[above] -= 12
    return folded.astype(np.int16)


def soprano_shift(pitches: np.ndarray) -> int:
    """The transposition that centres a melody on the Bach sopranos' range."""
    if len(pitches) == 0:
        return 0
    return int(SOPRANO_CENTRE - round(float(np.median(pitches))))


def _to_model(line: np.ndarray, shift: int, space: ChoraleSpace) -> np.ndarray:
    return np.where(line == REST, REST, fold(line + shift, space.min_pitch, space.max_pitch))


def _from_model(line: np.ndarray, shift: int) -> np.ndarray:
    return np.where(line == REST, REST, fold(line - shift, 0, 127))


# --- harmonize -------------------------------------------------------------------


def harmonize_score(score: Score, options: FillOptions) -> FillResult:
    model, ref = _load(options.model, HARMONIZE, options.device)
    options = seeded(options)
    space = model.space
    melody = extract_melody(quantize(score, space.steps_per_quarter))
    if not melody.notes:
        raise InputFormatError("no notes to harmonize: the input has no pitched notes")
    steps = max(n.end_step for n in melody.notes)
    soprano = np.full(steps, REST, np.int16)
    for note in melody.notes:
        soprano[note.start_step:note.end_step] = note.pitch
    shift = soprano_shift(soprano[soprano != REST])
    chorales = np.full((options.num_outputs, steps, len(space.voices)), REST, np.int16)
    chorales[:, :, 0] = _to_model(soprano, shift, space)
    free = np.zeros(chorales.shape, bool)
    bars = bar_starts(score, steps + 1, space.steps_per_quarter)
    free[:, :, 1:] = _harmonized_steps(soprano, bars[1] - bars[0] if len(bars) > 1 else steps + 1)[
        None, :, None]
    filled = fill(model, chorales, free, options, np.random.default_rng(options.seed))
    clock = TempoMap(score.tempos)
    velocity = int(np.median([n.velocity for n in melody.notes]))
    made_by = provenance(ref, options)
    outputs = []
    for chorale in filled:
        notes = [replace(n, instrument=0, program=options.program, is_drum=False,
                         start_step=None, end_step=None) for n in melody.notes]
        for voice in range(1, len(space.voices)):
            notes += voice_notes(_from_model(chorale[:, voice], shift), voice, clock,
                                 space.steps_per_quarter, velocity, options.program)
        outputs.append(_four_part_score(score, notes, made_by))
    warnings = []
    if np.any(chorales[0, :, 0] != np.where(soprano == REST, REST, soprano + shift)):
        warnings.append("the melody is wider than the model's soprano range: the model heard "
                        "some notes an octave away (the output keeps them as written)")
    return FillResult(numbered_takes(outputs), warnings)


def _harmonized_steps(soprano: np.ndarray, long_rest: int) -> np.ndarray:
    """The steps that get lower voices: from the melody's first note to its
    end, except rests of `long_rest` steps (a bar) or more."""
    sounding = soprano != REST
    keep = sounding.copy()
    start = None
    for step in range(len(soprano) + 1):
        if step < len(soprano) and not sounding[step]:
            start = step if start is None else start
            continue
        if start is not None and start > 0 and step < len(soprano) and step - start < long_rest:
            keep[start:step] = True  # a short rest inside the melody: the harmony goes on
        start = None
    return keep


def voice_notes(line: np.ndarray, instrument: int, clock: TempoMap, steps_per_quarter: int,
                velocity: int, program: int, offset: int = 0) -> list[Note]:
    """One voice's pitches per step → notes (a run of one pitch is one
    note); line[0] is grid step `offset` of the piece."""
    notes = []
    start = 0
    for step in range(1, len(line) + 1):
        if step == len(line) or line[step] != line[start]:
            if line[start] != REST:
                first, stop = start + offset, step + offset
                notes.append(Note(int(line[start]), velocity,
                                  clock.seconds_at(first / steps_per_quarter),
                                  clock.seconds_at(stop / steps_per_quarter),
                                  program=program, instrument=instrument))
            start = step
    return notes


def _four_part_score(score: Score, notes: list[Note], made_by: dict) -> Score:
    infos = tuple(InstrumentInfo(i, name) for i, name in enumerate(VOICE_NAMES))
    out = replace(score, notes=(), control_changes=(), pitch_bends=(), chords=(),
                  instrument_infos=infos, provenance=made_by, steps_per_quarter=None)
    return with_notes(out, notes)


def provenance(ref, options: FillOptions) -> dict:
    return {"model": ref.card.spec, "seed": options.seed,
            "temperature": options.sampling.temperature,
            "sampler": options.sampling.sampler, "iterations": options.sampling.iterations,
            "parallel_weight": options.sampling.parallel_weight,
            "range_weight": options.sampling.range_weight}


# --- infill ----------------------------------------------------------------------


def parse_voices(text: str, names=("soprano", "alto", "tenor", "bass")) -> tuple[int, ...]:
    """"alto,tenor" or "2,3" (1 = soprano) → voice indices. UsageError."""
    voices = []
    for word in filter(None, (w.strip().lower() for w in text.split(","))):
        if word in names:
            voices.append(names.index(word))
        elif word.isdigit() and 1 <= int(word) <= len(names):
            voices.append(int(word) - 1)
        else:
            raise UsageError(f"--voices: {word!r} is not a voice",
                             hint=f"use {', '.join(names)} or 1-{len(names)}")
    if not voices:
        raise UsageError("--voices names no voice", hint="e.g. --voices alto,tenor")
    return tuple(sorted(set(voices)))


_POSITION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s)?\s*$")


def parse_position(text: str) -> tuple[float, str]:
    """"5" → (5, "bar"), bars counted from 1; "12.5s" → (12.5, "s")."""
    match = _POSITION.match(text)
    if not match:
        raise UsageError(f"{text!r} is not a position",
                         hint='use a bar number ("5") or seconds ("12.5s")')
    value, unit = float(match.group(1)), "s" if match.group(2) else "bar"
    if unit == "bar" and (value < 1 or value != int(value)):
        raise UsageError(f"bar {text} does not exist: bars are whole numbers counted from 1")
    return value, unit


def bar_starts(score: Score, steps: int, steps_per_quarter: int) -> list[int]:
    """The grid step where each bar starts, bar 1 at step 0, following every
    time signature (a bar cut short by a new signature ends there: a pickup
    written as its own short bar is bar 1). 4/4 when the score has none."""
    clock = TempoMap(score.tempos)
    changes = sorted((int(round(clock.quarters_at(sig.time_s) * steps_per_quarter)),
                      max(1, round(sig.numerator * 4 / sig.denominator * steps_per_quarter)))
                     for sig in score.time_signatures)
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, 4 * steps_per_quarter))
    starts, position, index = [], 0, 0
    while position < steps:
        while index + 1 < len(changes) and changes[index + 1][0] <= position:
            index += 1
        starts.append(position)
        following = changes[index + 1][0] if index + 1 < len(changes) else None
        position += changes[index][1]
        if following is not None and starts[-1] < following < position:
            position = following
    return starts


def region_steps(score: Score, start: str | None, end: str | None, steps: int,
                 steps_per_quarter: int) -> tuple[int, int]:
    """The masked region [first, stop) in grid steps, within [0, steps)."""
    clock = TempoMap(score.tempos)
    bars = bar_starts(score, steps, steps_per_quarter)

    def step_of(text: str) -> int:
        value, unit = parse_position(text)
        if unit == "s":
            return int(round(clock.quarters_at(value) * steps_per_quarter))
        if value > len(bars) + 1:
            raise UsageError(f"bar {text} is past the end: the piece has {len(bars)} bars")
        return bars[int(value) - 1] if value <= len(bars) else steps

    first = step_of(start) if start else 0
    stop = min(step_of(end), steps) if end else steps
    if stop <= first:
        raise UsageError(f"the region {start or 'start'}..{end or 'end'} is empty: "
                         f"the piece has {len(bars)} bars "
                         f"({clock.seconds_at(steps / steps_per_quarter):.2f} s)")
    return first, stop


def infill_score(score: Score, options: FillOptions) -> FillResult:
    model, ref = _load(options.model, INFILL, options.device)
    options = seeded(options)
    space = model.space
    placed = list(zip(score.notes, grid_steps(score, space.steps_per_quarter)))
    parts = four_parts(placed, len(space.voices))
    if parts is None:
        raise InputFormatError(f"infill needs {len(space.voices)} parts (tracks); the input has "
                               f"{len({n.instrument for n in score.notes if not n.is_drum})}")
    steps = max(end for part in parts for _, (_, end) in part)
    chorale = _parts_grid(parts, steps)
    first, stop = region_steps(score, options.start, options.end, steps, space.steps_per_quarter)
    voices = options.voices or tuple(range(len(space.voices)))
    free = np.zeros((options.num_outputs, *chorale.shape), bool)
    free[:, first:stop, list(voices)] = True
    shift = soprano_shift(chorale[:, 0][chorale[:, 0] != REST])
    batch = np.repeat(_to_model(chorale, shift, space)[None], options.num_outputs, axis=0)
    filled = fill(model, batch, free, options, np.random.default_rng(options.seed))
    clock = TempoMap(score.tempos)
    instruments = {v: parts[v][0][0].instrument for v in voices}
    region = (clock.seconds_at(first / space.steps_per_quarter),
              clock.seconds_at(stop / space.steps_per_quarter))
    made_by = provenance(ref, options)
    outputs = []
    for result in filled:
        notes = _outside(placed, set(instruments.values()), (first, stop), region)
        for voice, instrument in instruments.items():
            part = [note for note, _ in parts[voice]]
            notes += voice_notes(_from_model(result[first:stop, voice], shift), instrument, clock,
                                 space.steps_per_quarter, int(np.median([n.velocity for n in part])),
                                 part[0].program, offset=first)
        outputs.append(replace(with_notes(score, notes), provenance=made_by))
    return FillResult(numbered_takes(outputs), [])


Placed = tuple[Note, tuple[int, int]]  # a note and its (start_step, end_step) on the grid


def four_parts(placed: list[Placed], voices: int) -> list[list[Placed]] | None:
    """The `voices` tracks with the most notes, highest mean pitch first."""
    parts: dict[int, list[Placed]] = {}
    for note, steps in placed:
        if not note.is_drum:
            parts.setdefault(note.instrument, []).append((note, steps))
    if len(parts) < voices:
        return None
    chosen = sorted(parts.values(), key=len, reverse=True)[:voices]
    chosen.sort(key=lambda part: -np.mean([note.pitch for note, _ in part]))
    return chosen


def _parts_grid(parts: list[list[Placed]], steps: int) -> np.ndarray:
    """Parts → (steps, voices) pitches, the highest sounding note per step."""
    chorale = np.full((steps, len(parts)), REST, np.int16)
    for v, part in enumerate(parts):
        for note, (start, end) in sorted(part, key=lambda item: item[0].pitch):
            chorale[start:end, v] = note.pitch
    return chorale


def _outside(placed: list[Placed], instruments: set[int], region_steps: tuple[int, int],
             region_s: tuple[float, float]) -> list[Note]:
    """The notes outside the region, as they were; a note of a masked track
    that reaches into the region (on the grid) keeps its parts before and
    after it."""
    (first, stop), (start_s, end_s) = region_steps, region_s
    kept = []
    for note, (start, end) in placed:
        if note.instrument not in instruments or note.is_drum or end <= first or start >= stop:
            kept.append(note)
            continue
        if start < first:
            kept.append(replace(note, end_s=start_s, end_step=None))
        if end > stop:
            kept.append(replace(note, start_s=end_s, start_step=None))
    return kept


def chorale_from_score(score: Score, voices: int = 4, steps_per_quarter: int = 4) -> np.ndarray | None:
    """A four-part score as (steps, voices) pitches; each step holds the
    part's highest sounding pitch. None when it has fewer parts."""
    parts = four_parts(list(zip(score.notes, grid_steps(score, steps_per_quarter))), voices)
    if parts is None:
        return None
    return _parts_grid(parts, max(end for part in parts for _, (_, end) in part))
