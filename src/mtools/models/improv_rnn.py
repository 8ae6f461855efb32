"""Improv RNN (Magenta's chord_pitches_improv): a melody generated over a
given chord progression. Each step's input is the chord of the *next* step
(no-chord flag, root, pitch classes, bass: 37 numbers) followed by the
melody one-hot (38). Melodies keep their key (training transposes pieces
by -5..+6 semitones instead) and are folded into 48..83.

Chords come from `--chords "C G Am F"` (one per bar unless
--steps-per-chord), else from the input's chord symbols, else from its
accompaniment (chords.infer_chords).
"""

from __future__ import annotations

import numpy as np

from mtools.errors import UsageError
from mtools.models.chords import (NO_CHORD_ROW, ChordSymbolError, chord_name, chord_row, infer_chords,
                                  score_chords_per_step, top_instrument)
from mtools.models.encoding import melody_event_ids, melody_ids_to_events
from mtools.models.events import melody_to_notes, primer_melody, squash_melody, transpose_melody
from mtools.score import ChordSymbol, Note, Score

CONTROL_SIZE = 1 + 12 + 12 + 12  # no-chord flag, root one-hot, pitch classes, bass one-hot
TRANSPOSITIONS = range(-5, 7)  # training augmentation, semitones (Magenta's improv pipeline)
CHORD_VOICING_LOW = 48  # --render-chords: bass from C3, the chord above it from C4
CHORD_VELOCITY = 64


def chord_controls(rows: np.ndarray) -> np.ndarray:
    """Chord rows (steps, 3) (root, mask, bass) → control inputs (steps, 37)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), CONTROL_SIZE), np.float32)
    chord = rows[:, 0] >= 0
    steps = np.flatnonzero(chord)
    out[~chord, 0] = 1.0
    out[steps, 1 + rows[chord, 0]] = 1.0
    out[:, 13:25] = (rows[:, 1:2] >> np.arange(12)) & 1
    out[steps, 25 + rows[chord, 2]] = 1.0
    return out


def transpose_example(ids: np.ndarray, control: np.ndarray, semitones: int, min_note: int,
                      max_note: int) -> tuple[np.ndarray, np.ndarray]:
    """Move an encoded lead sheet by `semitones`: melody ids (folded back
    into range by octaves) and the chord one-hots, rolled."""
    events = transpose_melody(melody_ids_to_events(ids, min_note), semitones, min_note, max_note)
    moved = control.copy()
    for first in (1, 13, 25):
        moved[:, first:first + 12] = np.roll(control[:, first:first + 12], semitones, axis=1)
    return melody_event_ids(events, min_note, max_note), moved


def resolve_progression(text: str, steps_per_chord: int) -> np.ndarray:
    """'C G7 Am F/C' → chord rows, `steps_per_chord` steps each."""
    symbols = text.replace("|", " ").split()
    if not symbols:
        raise UsageError("--chords is empty", hint='e.g. --chords "C G Am F"')
    try:
        rows = np.array([chord_row(symbol) for symbol in symbols], dtype=np.int16)
    except ChordSymbolError as exc:  # option text: a usage error, not bad input data
        raise UsageError(f"--chords: {exc}", hint='e.g. --chords "C G7 Am F/C N.C."') from None
    return np.repeat(rows, steps_per_chord, axis=0)


def _input_chords(score: Score, num_steps: int, steps_per_chord: int) -> np.ndarray:
    """The input's own chords per step: its chord symbols, else its
    accompaniment read every `steps_per_chord` steps."""
    if score.chords:
        return score_chords_per_step(score, num_steps)
    if not score.notes:
        return np.tile(np.array(NO_CHORD_ROW, np.int16), (num_steps, 1))
    return infer_chords(score, steps_per_chord, num_steps=num_steps,
                        melody_instrument=top_instrument(score.notes))


def continue_family(score: Score, ref, options, rng: np.random.Generator):
    """Continue the top line of `score` over chords (see continuation)."""
    from mtools.models.continuation import (ContinueResult, StepClock, place_continuation,
                                            provenance)
    from mtools.models.sequence import generate, load_event_rnn

    encoding = ref.card.encoding
    low, high, spq = int(encoding["min_note"]), int(encoding["max_note"]), \
        int(encoding["steps_per_quarter"])
    model = load_event_rnn(ref, device=options.device, rows=options.batch_rows)
    primer = primer_melody(score, steps_per_quarter=spq)
    per_chord = options.steps_per_chord or primer.steps_per_bar
    primer_rows = _input_chords(score, len(primer.events), per_chord)
    ahead = _progression(options, primer_rows, per_chord)
    if ahead is None:
        raise UsageError("improv_rnn plays over chords, and none were found",
                         hint='give --chords "C G Am F", or an input with chord symbols')
    qpm = primer.qpm  # continue_score gave a tempo-less primer --qpm as its tempo
    length = options.length
    num_steps = len(ahead) if length.is_default and options.chords else \
        length.to_steps(primer.steps_per_bar, 60.0 / qpm / spq)
    ahead = np.resize(ahead, (num_steps, 3))  # cycle the progression
    has_notes = bool(np.any(primer.events >= 0))
    events, _ = squash_melody(np.asarray(primer.events), low, high, None)
    primer_ids = melody_event_ids(events, low, high) if has_notes else \
        melody_event_ids(np.array([_first_note(ahead[0], rng)]), low, high)
    rows = primer_rows if has_notes else np.empty((0, 3), np.int16)
    control = chord_controls(np.concatenate([rows, ahead]))
    out = generate(model, primer_ids, num_steps - (0 if has_notes else 1),
                   num_outputs=options.num_outputs, options=options.search, rng=rng,
                   control=control, progress=options.progress)
    start = len(primer.events) if has_notes else 0
    clock = StepClock(score, spq, qpm)
    made_by = provenance(ref, options)
    scores = []
    for row in out:
        new_events = melody_ids_to_events(row[len(primer_ids) if has_notes else 0:], low)
        notes = melody_to_notes(new_events, step_s=1.0, velocity=90,
                                program=options.program or 0, instrument=_free_instrument(score))
        if options.render_chords:
            notes += chord_notes(ahead, _free_instrument(score) + 1)
        placed = place_continuation(score, notes, start, clock, options, made_by)
        scores.append(_with_chord_symbols(placed, ahead, start, clock, options))
    return ContinueResult(scores)


def _progression(options, primer_rows: np.ndarray, per_chord: int) -> np.ndarray | None:
    """Chord rows to play over after the primer: --chords, else the input's
    chords repeated; None when there are none."""
    if options.chords:
        return resolve_progression(options.chords, per_chord)
    if len(primer_rows) and np.any(primer_rows[:, 0] >= 0):
        return np.asarray(primer_rows, np.int16)
    return None


def _first_note(row, rng: np.random.Generator) -> int:
    """A first pitch for a melody from scratch: a chord tone near middle C."""
    mask = int(row[1])
    tones = [pc for pc in range(12) if mask >> pc & 1] or [0]
    return 60 + int(rng.choice(tones))


def _free_instrument(score: Score) -> int:
    return max((n.instrument for n in score.notes), default=-1) + 1


def chord_notes(rows: np.ndarray, instrument: int) -> list[Note]:
    """Block chords (times in steps): the bass from C3 up, the chord tones
    from C4 up, one chord per run of equal rows."""
    notes = []
    changes = [0] + [i for i in range(1, len(rows)) if tuple(rows[i]) != tuple(rows[i - 1])]
    for first, end in zip(changes, changes[1:] + [len(rows)]):
        root, mask, bass = (int(v) for v in rows[first])
        if root < 0:
            continue
        pitches = [CHORD_VOICING_LOW + bass] + [CHORD_VOICING_LOW + 12 + pc for pc in range(12)
                                                if mask >> pc & 1]
        notes += [Note(p, CHORD_VELOCITY, float(first), float(end), 0, instrument)
                  for p in pitches]
    return notes


def _with_chord_symbols(score: Score, rows: np.ndarray, start: int, clock, options) -> Score:
    """Add the progression's chord symbols to the output (JSONL
    textAnnotations, MIDI text events), one where the chord changes."""
    from dataclasses import replace

    begin = clock.seconds(start)
    base = 0.0 if options.only_generated else begin
    symbols = tuple(ChordSymbol(clock.seconds(start + i) - begin + base,
                                chord_name(int(r[0]), int(r[1]), int(r[2])))
                    for i, r in enumerate(rows)
                    if r[0] >= 0 and (i == 0 or tuple(r) != tuple(rows[i - 1])))
    return replace(score, chords=tuple(sorted(score.chords + symbols, key=lambda c: c.time_s)))
