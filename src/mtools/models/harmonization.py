"""`harmonize` and `infill`: scores ⇄ four-voice grids, and the dispatch to
the model that fills the cells. Coconet is the one model so far; another
plugs in as a module under mtools.models with
`fill(ref, chorales, free, options, rng) -> chorales` (see coconet_fill).

Harmonize takes the top line of whatever comes in as the soprano, shifts
it into the model's soprano range and back, and writes four named tracks.
Infill reads a four-part score, regenerates the cells inside the mask, and
keeps every note outside it as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from mtools.errors import InputFormatError, UsageError
from mtools.models.coconet import REST, ChoraleSpace, Coconet, GibbsOptions, generate
from mtools.score import (InstrumentInfo, Note, Score, TempoMap, extract_melody, quantize,
                          with_notes)

HARMONIZE, INFILL = "harmonize", "infill"
FAMILIES = frozenset({"coconet"})
SOPRANO_CENTRE = 70  # the middle of the Bach sopranos' range (60-81)
MAX_WINDOW_STEPS = 512  # longer pieces are filled in overlapping windows of this many steps
WINDOW_OVERLAP_STEPS = 64
DEFAULT_VELOCITY = 80
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


def _load(model: str, task: str, device: str | None) -> tuple[Coconet, object]:
    from mtools.models.registry import resolve_model

    ref = resolve_model(model, task=task)
    if ref.card.name not in FAMILIES:
        raise UsageError(f"model {ref.card.spec} is not a model `{task}` knows how to play",
                         hint=f"{task} plays {', '.join(sorted(FAMILIES))}")
    return Coconet.from_ref(ref, device=device), ref


def fill(model: Coconet, chorales: np.ndarray, free: np.ndarray, options: FillOptions,
         rng: np.random.Generator) -> np.ndarray:
    """Fill the free cells, the whole piece at once when it is short, else
    window by window, each window conditioned on the end of the one before."""
    steps = chorales.shape[1]
    if steps <= MAX_WINDOW_STEPS:
        return generate(model, chorales, free, options.sampling, rng)
    result, free = chorales.copy(), free.copy()
    start = 0
    while True:
        end = min(steps, start + MAX_WINDOW_STEPS)
        window = generate(model, result[:, start:end], free[:, start:end], options.sampling, rng)
        result[:, start:end] = window
        free[:, start:end] = False  # filled: context for the next window
        if end == steps:
            return result
        start = end - WINDOW_OVERLAP_STEPS


# --- harmonize -------------------------------------------------------------------


def harmonize_score(score: Score, options: FillOptions) -> FillResult:
    model, ref = _load(options.model, HARMONIZE, options.device)
    space = model.space
    melody = extract_melody(quantize(score, space.steps_per_quarter))
    if not melody.notes:
        raise InputFormatError("no notes to harmonize: the input has no pitched notes")
    steps = _padded_steps(score, melody.notes, space)
    soprano = np.full(steps, REST, np.int16)
    for note in melody.notes:
        soprano[note.start_step:note.end_step] = note.pitch
    shift = soprano_shift(soprano[soprano != REST], space)
    chorales = np.full((options.num_outputs, steps, len(space.voices)), REST, np.int16)
    chorales[:, :, 0] = np.where(soprano == REST, REST, _fold(soprano + shift, space))
    free = np.ones(chorales.shape, bool)
    free[:, :, 0] = False
    rng = np.random.default_rng(options.seed)
    filled = fill(model, chorales, free, options, rng)
    clock = TempoMap(score.tempos)
    velocity = int(np.median([n.velocity for n in melody.notes]))
    outputs = []
    for chorale in filled:
        notes = [replace(n, instrument=0, program=options.program, is_drum=False,
                         start_step=None, end_step=None) for n in melody.notes]
        for voice in range(1, len(space.voices)):
            notes += voice_notes(chorale[:, voice] - shift, voice, clock, space, velocity,
                                 options.program)
        outputs.append(_four_part_score(score, notes, provenance(ref, options)))
    warnings = []
    if any(n.pitch + shift != _fold(np.array([n.pitch + shift]), space)[0] for n in melody.notes):
        warnings.append("the melody is wider than the model's soprano range: the model heard "
                        "some notes an octave away (the output keeps them as written)")
    return FillResult(outputs, warnings)


def soprano_shift(pitches: np.ndarray, space: ChoraleSpace) -> int:
    """The transposition that centres a melody on the Bach sopranos' range."""
    if len(pitches) == 0:
        return 0
    return int(SOPRANO_CENTRE - round(float(np.median(pitches))))


def _fold(pitches: np.ndarray, space: ChoraleSpace) -> np.ndarray:
    """Pitches moved by octaves into [min_pitch, max_pitch]."""
    folded = pitches.astype(np.int64).copy()
    while (low := folded < space.min_pitch).any():
        folded[low] += 12
    while (high := folded > space.max_pitch).any():
        folded[high] -= 12
    return folded.astype(np.int16)


def _padded_steps(score: Score, notes, space: ChoraleSpace) -> int:
    """The piece's length in steps, rounded up to whole bars."""
    steps = max(n.end_step for n in notes)
    bar = _steps_per_bar(score, space)
    return -(-steps // bar) * bar


def _steps_per_bar(score: Score, space: ChoraleSpace) -> int:
    sig = score.time_signatures[0] if score.time_signatures else None
    numerator, denominator = (sig.numerator, sig.denominator) if sig else (4, 4)
    return max(1, round(numerator * 4 / denominator * space.steps_per_quarter))


def voice_notes(line: np.ndarray, instrument: int, clock: TempoMap, space: ChoraleSpace,
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
                                  clock.seconds_at(first / space.steps_per_quarter),
                                  clock.seconds_at(stop / space.steps_per_quarter),
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
            "sampler": options.sampling.sampler, "iterations": options.sampling.iterations}


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
        raise UsageError("--voices names no voice")
    return tuple(sorted(set(voices)))


_POSITION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|bar|bars)?\s*$")


def parse_position(text: str) -> tuple[float, str]:
    """"5" or "5bar" → (5, "bar"), bars counted from 1; "12.5s" → (12.5, "s")."""
    match = _POSITION.match(text)
    if not match:
        raise UsageError(f"{text!r} is not a position", hint='use a bar number ("5") or seconds ("12.5s")')
    unit = "s" if match.group(2) == "s" else "bar"
    value = float(match.group(1))
    if unit == "bar" and value < 1:
        raise UsageError(f"bar {text} does not exist: bars are counted from 1")
    return value, unit


def region_steps(score: Score, start: str | None, end: str | None, steps: int,
                 space: ChoraleSpace) -> tuple[int, int]:
    """The masked region [first, stop) in grid steps."""
    clock = TempoMap(score.tempos)
    bar = _steps_per_bar(score, space)

    def step_of(text: str) -> int:
        value, unit = parse_position(text)
        if unit == "s":
            return int(round(clock.quarters_at(value) * space.steps_per_quarter))
        return int(round((value - 1) * bar))

    first = step_of(start) if start else 0
    stop = step_of(end) if end else steps
    first, stop = max(0, first), min(steps, stop)
    if stop <= first:
        raise UsageError(f"the region {start or 'start'}..{end or 'end'} is empty in this "
                         f"{steps / bar:g}-bar piece")
    return first, stop


def infill_score(score: Score, options: FillOptions) -> FillResult:
    model, ref = _load(options.model, INFILL, options.device)
    space = model.space
    grid = quantize(score, space.steps_per_quarter)
    parts = four_parts(grid, len(space.voices))
    if parts is None:
        raise InputFormatError(f"infill needs {len(space.voices)} parts (tracks); the input has "
                               f"{len({n.instrument for n in score.notes if not n.is_drum})}")
    steps = _padded_steps(score, grid.notes, space)
    chorale = _parts_grid(parts, steps)
    first, stop = region_steps(score, options.start, options.end, steps, space)
    voices = options.voices or tuple(range(len(space.voices)))
    free = np.zeros(chorale.shape, bool)
    free[first:stop, list(voices)] = True
    sounding = chorale[chorale != REST]
    shift = soprano_shift(chorale[:, 0][chorale[:, 0] != REST], space) if len(sounding) else 0
    model_view = np.where(chorale == REST, REST, _fold(chorale + shift, space))
    batch = np.repeat(model_view[None], options.num_outputs, axis=0)
    rng = np.random.default_rng(options.seed)
    filled = fill(model, batch, np.repeat(free[None], options.num_outputs, axis=0), options, rng)
    clock = TempoMap(score.tempos)
    instruments = [notes[0].instrument for notes in parts]
    region = (clock.seconds_at(first / space.steps_per_quarter),
              clock.seconds_at(stop / space.steps_per_quarter))
    masked = {instruments[v] for v in voices}
    outputs = []
    for result in filled:
        kept = _outside(score.notes, masked, *region)
        for voice in voices:
            line = np.where(result[:, voice] == REST, REST, result[:, voice] - shift)
            part = parts[voice]
            velocity = int(np.median([n.velocity for n in part]))
            kept += voice_notes(line[first:stop], instruments[voice], clock, space, velocity,
                                part[0].program, offset=first)
        outputs.append(replace(with_notes(score, kept), provenance=provenance(ref, options)))
    return FillResult(outputs, [])


def four_parts(grid: Score, voices: int) -> list[list[Note]] | None:
    """The `voices` tracks with the most notes, highest mean pitch first."""
    parts: dict[int, list[Note]] = {}
    for note in grid.notes:
        if not note.is_drum:
            parts.setdefault(note.instrument, []).append(note)
    if len(parts) < voices:
        return None
    chosen = sorted(parts.values(), key=len, reverse=True)[:voices]
    chosen.sort(key=lambda notes: -np.mean([n.pitch for n in notes]))
    return chosen


def _outside(notes, instruments: set[int], start_s: float, end_s: float) -> list[Note]:
    """The notes outside the region: untouched when they miss it, else (for
    the masked tracks) the parts of them before and after it."""
    kept = []
    eps = 1e-9
    for note in notes:
        if note.instrument not in instruments or note.is_drum \
                or note.end_s <= start_s + eps or note.start_s >= end_s - eps:
            kept.append(note)
            continue
        if note.start_s < start_s - eps:
            kept.append(replace(note, end_s=start_s, end_step=None))
        if note.end_s > end_s + eps:
            kept.append(replace(note, start_s=end_s, start_step=None))
    return kept


def chorale_from_score(score: Score, voices: int = 4, steps_per_quarter: int = 4) -> np.ndarray | None:
    """A four-part score as (steps, voices) pitches; each step holds the
    part's highest sounding pitch. None when it has fewer parts."""
    parts = four_parts(quantize(score, steps_per_quarter), voices)
    if parts is None:
        return None
    return _parts_grid(parts, max(n.end_step for notes in parts for n in notes))


def _parts_grid(parts: list[list[Note]], steps: int) -> np.ndarray:
    """Parts → (steps, voices) pitches, the highest sounding note per step."""
    chorale = np.full((steps, len(parts)), REST, np.int16)
    for v, notes in enumerate(parts):
        for note in sorted(notes, key=lambda n: n.pitch):
            chorale[note.start_step:note.end_step, v] = note.pitch
    return chorale
