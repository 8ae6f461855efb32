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


def write_random_tunes(folder, count: int = 30, seed: int = 0, bars: int = 8) -> None:
    """`count` MIDI files of `bars` bars each: random C-major scale notes, each
    held for two 16ths (enough bars and pitch classes for the melody
    extractor)."""
    import numpy as np

    from mtools.io.midi import score_to_midi

    rng = np.random.default_rng(seed)
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    for index in range(count):
        tokens = []
        for _ in range(8 * bars):
            tokens += [str(scale[rng.integers(len(scale))]), "_"]
        (folder / f"tune{index:02d}.mid").write_bytes(score_to_midi(melody(" ".join(tokens))))
