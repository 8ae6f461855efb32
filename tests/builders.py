"""One-line score builders for tests."""

from __future__ import annotations

from mtools.score import ControlChange, Note, Score, Tempo, TimeSignature, make_score


def melody(text: str, *, qpm: float = 120.0, steps_per_quarter: int = 4, velocity: int = 90,
           program: int = 0, instrument: int = 0, **fields) -> Score:
    """A monophonic score from text: MIDI pitches, "_" holds the previous note
    one more step, "-" is a rest step. E.g. melody("60 _ 62 - 64")."""
    step_s = 60.0 / qpm / steps_per_quarter
    notes: list[list] = []
    step = 0
    for token in text.split():
        if token == "_" and notes:
            notes[-1][2] += step_s
        elif token != "-" and token != "_":
            notes.append([int(token), step * step_s, (step + 1) * step_s])
        step += 1
    fields.setdefault("tempos", [Tempo(0.0, qpm)])
    fields.setdefault("time_signatures", [TimeSignature(0.0, 4, 4)])
    return make_score([Note(p, velocity, s, e, program, instrument) for p, s, e in notes],
                      **fields)


def chord_notes(pitches, start_s: float, end_s: float, **kw) -> list[Note]:
    return [Note(p, kw.pop("velocity", 80), start_s, end_s, **kw) for p in pitches]


def pedal(instrument: int, down_s: float, up_s: float) -> list[ControlChange]:
    return [ControlChange(down_s, 64, 127, 0, instrument), ControlChange(up_s, 64, 0, 0, instrument)]


def drums(hits: list[tuple[int, float]], duration_s: float = 0.1) -> Score:
    """Drum hits as (GM key, start second)."""
    return make_score([Note(k, 100, t, t + duration_s, 0, 9, True) for k, t in hits])
