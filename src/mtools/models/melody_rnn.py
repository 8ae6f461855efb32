"""Melody RNN (Magenta's basic_rnn and lookback_rnn): a monophonic line on
a 16th-note grid, pitches min_note..max_note-1 (48..83), moved into C major
and into that range for the model and back afterwards.

The card's `encoding` holds everything pre/post-processing needs:
num_events (38), lookbacks, counter_bits, default_id, min_note, max_note,
steps_per_quarter, transpose_to_key (0 = C).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mtools.errors import UsageError
from mtools.models.chords import ChordSymbolError, parse_chord
from mtools.models.encoding import melody_event_ids, melody_ids_to_events
from mtools.models.events import (NO_EVENT, MelodyLine, melody_to_notes,
                                  primer_melody, squash_melody, transpose_melody)
from mtools.models.sequence import generate, load_event_rnn
from mtools.score import Note, Score

DEFAULT_VELOCITY = 90
START_PITCHES = (60, 62, 64, 65, 67, 69, 71, 72)  # a first note when there is no primer (in C)


@dataclass(frozen=True)
class MelodySpace:
    """The model's pitch space, read from a card's encoding."""

    min_note: int
    max_note: int
    steps_per_quarter: int
    transpose_to_key: int

    @classmethod
    def from_card(cls, encoding: dict) -> MelodySpace:
        return cls(int(encoding["min_note"]), int(encoding["max_note"]),
                   int(encoding["steps_per_quarter"]), int(encoding.get("transpose_to_key", 0)))

    def to_model(self, events: np.ndarray, key: int | None = None) -> tuple[np.ndarray, int]:
        """Events moved into the model's key and range: (ids, semitones moved)."""
        if key is not None and np.any(events >= 0):  # the caller knows the key
            moved, amount = squash_melody(transpose_melody(events, self.transpose_to_key - key),
                                          self.min_note, self.max_note, None)
            amount += self.transpose_to_key - key
        else:
            moved, amount = squash_melody(events, self.min_note, self.max_note,
                                          self.transpose_to_key)
        return melody_event_ids(moved, self.min_note, self.max_note), amount


def training_ids(line: MelodyLine, space: MelodySpace) -> np.ndarray:
    """A training melody as model ids (key and range as the model sees them)."""
    return space.to_model(np.asarray(line.events))[0]


def parse_key(text: str) -> int:
    """'D', 'Bb', 'F#m', 'Am' → the major key's pitch class (a minor key
    gives its relative major). Raises UsageError."""
    try:
        parsed = parse_chord(text.strip()) if text.strip() else None
    except ChordSymbolError:
        parsed = None
    if parsed is None:
        raise UsageError(f"--key {text!r} is not a key (e.g. C, Bb, F#m)")
    root, pitch_classes, _ = parsed
    minor = (root + 3) % 12 in pitch_classes and (root + 4) % 12 not in pitch_classes
    return (root + 3) % 12 if minor else root


def continue_family(score: Score, ref, options, rng: np.random.Generator):
    """Continue the top line of `score` (see mtools.models.continuation)."""
    from mtools.models.continuation import ContinueResult, StepClock, provenance

    space = MelodySpace.from_card(ref.card.encoding)
    model = load_event_rnn(ref, device=options.device, rows=options.batch_rows)
    primer = primer_melody(score, steps_per_quarter=space.steps_per_quarter)
    qpm = primer.qpm  # continue_score gave a tempo-less primer --qpm as its tempo
    has_notes = bool(np.any(primer.events >= 0))
    key = parse_key(options.key) if options.key else None
    if has_notes:
        primer_ids, shift = space.to_model(np.asarray(primer.events), key)
    else:  # from scratch: a first note in C, chosen by the seed
        primer_ids, shift = melody_event_ids(
            np.array([rng.choice(START_PITCHES)]), space.min_note, space.max_note), 0
    step_s = 60.0 / qpm / space.steps_per_quarter
    num_steps = options.length.to_steps(primer.steps_per_bar, step_s)
    rows = generate(model, primer_ids, num_steps - (0 if has_notes else 1),
                    num_outputs=options.num_outputs, options=options.search, rng=rng,
                    progress=options.progress)
    skip = len(primer_ids) if has_notes else 0  # the seed note is the output's first step
    clock = StepClock(score, space.steps_per_quarter, qpm)
    made_by = provenance(ref, options)
    scores = [_place(score, primer, _to_score_space(row[skip:], shift, space), clock, options,
                     made_by) for row in rows]
    warnings = []
    if score.notes and not has_notes:
        warnings.append("no melody in the input: started from scratch")
    return ContinueResult(scores, warnings)


def _to_score_space(ids: np.ndarray, shift: int, space: MelodySpace) -> np.ndarray:
    """Generated ids → events at the primer's pitch (undoing the shift)."""
    events = melody_ids_to_events(ids, space.min_note)
    return transpose_melody(events, -shift, 0, 128)


def _place(score: Score, primer: MelodyLine, new_events: np.ndarray, clock, options,
           provenance: dict) -> Score:
    """Primer plus continuation; the primer's last note is lengthened when
    the continuation begins by holding it."""
    from mtools.models.continuation import place_continuation

    melody_notes = [n for n in score.notes if not n.is_drum]
    velocity = int(np.median([n.velocity for n in melody_notes])) if melody_notes \
        else DEFAULT_VELOCITY
    program = options.program if options.program is not None else primer.program
    step_notes = melody_to_notes(new_events, step_s=1.0, velocity=velocity, program=program,
                                 instrument=_instrument_for(score, program))
    start, held = len(primer.events), _held_steps(new_events)

    def lengthen(notes: list[Note]) -> list[Note]:
        if not held:
            return notes
        return _lengthen_last(notes, clock.seconds(start), clock.seconds(start + held))

    return place_continuation(score, step_notes, start, clock, options, provenance, lengthen)


def _held_steps(events: np.ndarray) -> int:
    """How many leading steps of a continuation hold the primer's last note."""
    marked = np.flatnonzero(np.asarray(events) != NO_EVENT)
    return int(marked[0]) if len(marked) else len(events)


def _lengthen_last(notes: list[Note], end_s: float, new_end_s: float) -> list[Note]:
    """Lengthen the highest pitched note that sounds up to `end_s` (the
    primer's last melody note) to `new_end_s`."""
    sounding = [n for n in notes if not n.is_drum and abs(n.end_s - end_s) < 1e-3]
    if not sounding:
        return notes
    top = max(sounding, key=lambda n: n.pitch)
    return [replace(n, end_s=new_end_s) if n is top else n for n in notes]


def _instrument_for(score: Score, program: int) -> int:
    """The instrument of the primer's melody when it has this program, else a
    new one (so the MIDI writer gives the new notes their own track)."""
    pitched = [n for n in score.notes if not n.is_drum]
    if not pitched:
        return 0
    top = max(pitched, key=lambda n: (n.end_s, n.pitch))
    if top.program == program:
        return top.instrument
    return max(n.instrument for n in score.notes) + 1
