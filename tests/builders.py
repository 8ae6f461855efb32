"""One-line score builders for tests."""

from __future__ import annotations

from dataclasses import replace

from mtools.score import ControlChange, Note, Score, make_score, melody_from_text


def melody(text: str, *, qpm: float = 120.0, steps_per_quarter: int = 4, velocity: int = 90,
           program: int = 0, instrument: int = 0, **fields) -> Score:
    """A monophonic score from text (see mtools.score.melody_from_text):
    MIDI pitches, "_" holds the previous note one more step, "-" rests."""
    score = melody_from_text(text, qpm=qpm, steps_per_quarter=steps_per_quarter,
                             velocity=velocity, program=program, instrument=instrument)
    return replace(score, **fields) if fields else score


def chord_notes(pitches, start_s: float, end_s: float, **kw) -> list[Note]:
    return [Note(p, kw.pop("velocity", 80), start_s, end_s, **kw) for p in pitches]


def pedal(instrument: int, down_s: float, up_s: float) -> list[ControlChange]:
    return [ControlChange(down_s, 64, 127, 0, instrument), ControlChange(up_s, 64, 0, 0, instrument)]


def drums(hits: list[tuple[int, float]], duration_s: float = 0.1) -> Score:
    """Drum hits as (GM key, start second)."""
    return make_score([Note(k, 100, t, t + duration_s, 0, 9, True) for k, t in hits])
