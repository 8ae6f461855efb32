"""Chords for Improv RNN: chord symbols parsed to pitch classes, chords per
grid step (from a score's chord symbols, or inferred from its accompaniment
by template matching), and lead sheets (a melody with a chord per step).

A chord per step is a row of three ints, `(root, mask, bass)`: root pitch
class 0..11 (C = 0), the 12-bit mask of the chord's pitch classes (bit k =
pitch class k), and the bass pitch class; no chord (N.C.) is `(-1, 0, -1)`.
These rows hold everything Magenta's chord encodings need (root, pitch
classes, bass; major/minor quality via `chord_quality`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from mtools.errors import InputFormatError
from mtools.models.events import (DEFAULT_GAP_BARS, DEFAULT_MIN_BARS, STEPS_PER_QUARTER,
                                  MelodyLine, score_grid, score_to_melodies)
from mtools.score import Score, TempoMap, extract_melody

NO_CHORD = "N.C."
NO_CHORD_ROW = (-1, 0, -1)
LEAD_SHEET_MIN_UNIQUE_PITCHES = 3  # Magenta's improv_rnn pipeline
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_DEGREE_SEMITONES = {1: 0, 2: 2, 3: 4, 4: 5, 5: 7, 6: 9, 7: 11}
_NO_CHORD_SPELLINGS = {"", "n.c.", "n.c", "nc", "none", "no chord", "x"}


class ChordSymbolError(InputFormatError):
    """A chord symbol that cannot be read."""


# Chord kinds as scale degrees ("b7" = minor seventh), as in note_seq's
# chord_symbols_lib, plus the Nottingham spellings "d" (diminished) and "a"
# (augmented). A bare "-" means flat (music21's spelling: "B-" is B flat),
# never minor.
_KINDS = [
    (("", "maj", "M", "major"), "1 3 5"),
    (("m", "min", "mi", "minor"), "1 b3 5"),
    (("+", "aug", "a"), "1 3 #5"),
    (("o", "dim", "d", "°"), "1 b3 b5"),
    (("7", "dom7", "dom"), "1 3 5 b7"),
    (("maj7", "M7", "Maj7", "ma7", "j7", "Δ", "Δ7"), "1 3 5 7"),
    (("m7", "min7", "mi7"), "1 b3 5 b7"),
    (("o7", "dim7", "d7", "°7"), "1 b3 b5 bb7"),
    (("+7", "aug7", "a7", "7+"), "1 3 #5 b7"),
    (("m7b5", "min7b5", "ø", "ø7", "/o", "/o7"), "1 b3 b5 b7"),
    (("mmaj7", "mM7", "mMaj7", "minmaj7", "minMaj7", "m(maj7)", "m(M7)"), "1 b3 5 7"),
    (("6", "maj6", "M6"), "1 3 5 6"),
    (("m6", "min6"), "1 b3 5 6"),
    (("9", "dom9"), "1 3 5 b7 9"),
    (("maj9", "M9"), "1 3 5 7 9"),
    (("m9", "min9"), "1 b3 5 b7 9"),
    (("+9", "aug9"), "1 3 #5 b7 9"),
    (("6/9", "69"), "1 3 5 6 9"),
    (("11",), "1 3 5 b7 9 11"),
    (("maj11", "M11"), "1 3 5 7 9 11"),
    (("m11", "min11"), "1 b3 5 b7 9 11"),
    (("13",), "1 3 5 b7 9 11 13"),
    (("maj13", "M13"), "1 3 5 7 9 11 13"),
    (("m13", "min13"), "1 b3 5 b7 9 11 13"),
    (("sus2",), "1 2 5"),
    (("sus", "sus4"), "1 4 5"),
    (("7sus4", "7sus", "sus7"), "1 4 5 b7"),
    (("9sus4", "9sus"), "1 4 5 b7 9"),
    (("5",), "1 5"),
    (("ped",), "1"),
]


def _degrees(spec: str) -> dict[int, int]:
    """"1 b3 5" → {degree: alteration in semitones}."""
    out = {}
    for token in spec.split():
        digits = token.lstrip("#b")
        out[int(digits)] = token.count("#") - token.count("b")
    return out


_KIND_DEGREES = {abbrev: _degrees(spec) for abbrevs, spec in _KINDS for abbrev in abbrevs}
_KINDS_LONGEST_FIRST = sorted(_KIND_DEGREES, key=len, reverse=True)
_ROOT = re.compile(r"([A-G])([#b\-]*)")
_MODIFICATION = re.compile(r"[(,\s]*(add|no|omit)?([#b+\-]?)(\d+)[)\s]*")
_BASS = re.compile(r"/([A-Ga-g])([#b\-+]*)$")


def _accidental(text: str, sharp_plus: bool = False) -> int:
    sharps = text.count("#") + (text.count("+") if sharp_plus else 0)
    return sharps - text.count("b") - text.count("-")


def parse_chord(symbol: str) -> tuple[int, frozenset[int], int] | None:
    """A chord symbol → (root pitch class, pitch classes, bass pitch class),
    or None for no chord ("N.C.", "NC", ""). Reads note_seq's grammar (kind,
    then degree modifications such as "b9", "#11", "add9", "no3", then an
    optional "/bass"), music21 figures ("B-m" = B flat minor) and the
    Nottingham spellings ("Cd" diminished, "Ca" augmented, "C/e" over E).
    The slash bass is not added to the pitch classes (as in note_seq).
    Raises ChordSymbolError when the symbol cannot be read."""
    text = symbol.strip().replace("♯", "#").replace("♭", "b")
    if text.lower() in _NO_CHORD_SPELLINGS:
        return None
    root_match = _ROOT.match(text)
    if not root_match:
        raise ChordSymbolError(f"cannot read chord symbol {symbol!r}: no root note")
    root = (_LETTER_PC[root_match.group(1)] + _accidental(root_match.group(2))) % 12
    rest, bass = text[root_match.end():], root
    bass_match = _BASS.search(rest)
    if bass_match:
        bass = (_LETTER_PC[bass_match.group(1).upper()]
                + _accidental(bass_match.group(2), sharp_plus=True)) % 12
        rest = rest[:bass_match.start()]
    for kind in _KINDS_LONGEST_FIRST:
        if rest.startswith(kind):
            degrees = _modified(dict(_KIND_DEGREES[kind]), rest[len(kind):])
            if degrees is not None:
                pcs = frozenset((root + _DEGREE_SEMITONES[(d - 1) % 7 + 1] + alter) % 12
                                for d, alter in degrees.items())
                return root, pcs, bass
    raise ChordSymbolError(f"cannot read chord symbol {symbol!r}")


def _modified(degrees: dict[int, int], text: str) -> dict[int, int] | None:
    """Apply modifications like "b9", "(#11)", "add9", "no5" to `degrees`;
    None when `text` is not a run of modifications."""
    pos = 0
    while pos < len(text):
        match = _MODIFICATION.match(text, pos)
        if not match or match.end() == pos:
            return None
        verb, accidental, degree = match.group(1), match.group(2), int(match.group(3))
        if degree < 1 or degree > 13:
            return None
        if verb in ("no", "omit"):
            degrees.pop(degree, None)
        else:
            natural = -1 if degree == 7 and verb == "add" else 0  # "add7" = b7
            degrees[degree] = natural + _accidental(accidental, sharp_plus=True)
            if degree in (9, 11, 13):
                degrees.pop(degree - 7, None)  # a "b9" replaces a plain 2nd, etc.
        pos = match.end()
    return degrees


def mask_of(pitch_classes) -> int:
    """12-bit mask of pitch classes."""
    return sum(1 << (pc % 12) for pc in set(pitch_classes))


def chord_row(symbol: str) -> tuple[int, int, int]:
    """A chord symbol as a (root, mask, bass) row; NO_CHORD_ROW for N.C."""
    parsed = parse_chord(symbol)
    if parsed is None:
        return NO_CHORD_ROW
    root, pcs, bass = parsed
    return root, mask_of(pcs), bass


# --- templates: naming and inference -------------------------------------------

# (abbreviation, intervals above the root), simplest first: ties go to the
# earlier one. Used to name chords and to infer them from notes.
TEMPLATES = (
    ("", (0, 4, 7)), ("m", (0, 3, 7)), ("7", (0, 4, 7, 10)), ("m7", (0, 3, 7, 10)),
    ("maj7", (0, 4, 7, 11)), ("dim", (0, 3, 6)), ("aug", (0, 4, 8)), ("m7b5", (0, 3, 6, 10)),
    ("dim7", (0, 3, 6, 9)), ("sus4", (0, 5, 7)), ("sus2", (0, 2, 7)), ("6", (0, 4, 7, 9)),
    ("m6", (0, 3, 7, 9)), ("7sus4", (0, 5, 7, 10)), ("mmaj7", (0, 3, 7, 11)),
    ("aug7", (0, 4, 8, 10)), ("9", (0, 2, 4, 7, 10)), ("m9", (0, 2, 3, 7, 10)),
    ("maj9", (0, 2, 4, 7, 11)),
)


def _template_matrix() -> np.ndarray:
    """(len(TEMPLATES) * 12, 12) unit rows: template t on root r at t*12+r."""
    rows = np.zeros((len(TEMPLATES) * 12, 12))
    for t, (_, intervals) in enumerate(TEMPLATES):
        for root in range(12):
            rows[t * 12 + root, [(root + i) % 12 for i in intervals]] = 1.0
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


_TEMPLATE_ROWS = _template_matrix()
_TEMPLATE_MASKS = (_TEMPLATE_ROWS > 0).astype(np.int64) @ (1 << np.arange(12))


def chord_name(root: int, mask: int, bass: int | None = None) -> str:
    """A figure for a (root, mask, bass) row: the template whose pitch
    classes match exactly, else the closest one ("C7", "Am/E"); "N.C."
    for root -1."""
    if root < 0:
        return NO_CHORD
    vector = np.array([(mask >> k) & 1 for k in range(12)], dtype=float)
    scores = _TEMPLATE_ROWS[root::12] @ vector
    kind = TEMPLATES[int(np.argmax(scores))][0]
    suffix = f"/{NOTE_NAMES[bass]}" if bass is not None and bass >= 0 and bass != root else ""
    return NOTE_NAMES[root] + kind + suffix


def chord_quality(root: int, mask: int) -> str:
    """"major", "minor", "augmented", "diminished" or "other" from the
    chord's third and fifth (note_seq's chord_symbol_quality)."""
    if root < 0:
        return "other"
    has = {k for k in range(12) if mask >> ((root + k) % 12) & 1}
    if 4 in has and 3 not in has:
        return "major" if 7 in has else "augmented" if 8 in has else "other"
    if 3 in has and 4 not in has:
        return "minor" if 7 in has else "diminished" if 6 in has else "other"
    return "other"


def match_templates(weights: np.ndarray, bass: np.ndarray) -> np.ndarray:
    """Best template per row of pitch-class weights. weights: (n, 12) ≥ 0
    (e.g. sounding duration per pitch class); bass: (n,) lowest pitch class
    or -1. Cosine similarity picks the chord; ties prefer a root on the bass,
    then the simpler template. Returns (n, 3) int16 rows; N.C. where a row
    of weights is all zero."""
    weights = np.asarray(weights, dtype=float)
    norms = np.linalg.norm(weights, axis=1)
    scores = (weights / np.maximum(norms, 1e-12)[:, None]) @ _TEMPLATE_ROWS.T  # (n, T*12)
    roots = np.tile(np.arange(12), len(TEMPLATES))
    scores = scores + 1e-6 * (roots[None, :] == np.asarray(bass)[:, None])
    scores = scores - 1e-8 * (np.arange(scores.shape[1]) // 12)[None, :]
    best = np.argmax(scores, axis=1)
    rows = np.stack([best % 12, _TEMPLATE_MASKS[best], np.asarray(bass)], axis=1)
    rows[norms == 0] = NO_CHORD_ROW
    return rows.astype(np.int16)


# --- chords per step --------------------------------------------------------------


def score_chords_per_step(score: Score, num_steps: int, *,
                          steps_per_quarter: int = STEPS_PER_QUARTER,
                          start_step: int = 0) -> np.ndarray:
    """Chord rows (num_steps, 3) int16 for grid steps start_step.. from the
    score's chord symbols (Score.chords): each symbol holds until the next;
    N.C. before the first. Raises ChordSymbolError on an unreadable one."""
    rows = np.tile(np.array(NO_CHORD_ROW, dtype=np.int16), (num_steps, 1))
    tmap = TempoMap(score.tempos)
    for chord in score.chords:
        step = int(round(tmap.quarters_at(chord.time_s) * steps_per_quarter)) - start_step
        rows[max(step, 0):] = chord_row(chord.figure)
    return rows


def infer_chords(score: Score, steps_per_chord: int, *, num_steps: int | None = None,
                 steps_per_quarter: int = STEPS_PER_QUARTER,
                 melody_instrument: int | None = None) -> np.ndarray:
    """Chord rows (num_steps, 3) int16 inferred from the accompaniment: the
    grid is cut into spans of `steps_per_chord` steps from step 0, and each
    span gets the template best matching the sounding time of each pitch
    class (N.C. where nothing sounds). The melody is left out: the notes of
    `melody_instrument`, else of the highest-pitched instrument when there
    are several, else the top line. Steps per chord 1 reads block chords
    exactly; a bar or half bar suits broken accompaniment."""
    grid = score_grid(score, steps_per_quarter, strict=False)
    pitched = [n for n in grid.notes if not n.is_drum]
    if num_steps is None:
        num_steps = max([n.end_step for n in pitched], default=0)
    chords = _accompaniment(pitched, melody_instrument)
    spans = -(-num_steps // steps_per_chord)
    weights = np.zeros((spans, 12))
    lowest = np.full(spans, 128)
    for note in chords:
        first, last = note.start_step // steps_per_chord, (note.end_step - 1) // steps_per_chord
        for span in range(max(first, 0), min(last, spans - 1) + 1):
            lo, hi = span * steps_per_chord, (span + 1) * steps_per_chord
            weights[span, note.pitch % 12] += min(hi, note.end_step) - max(lo, note.start_step)
            lowest[span] = min(lowest[span], note.pitch)
    bass = np.where(lowest < 128, lowest % 12, -1)
    rows = match_templates(weights, bass)
    return np.repeat(rows, steps_per_chord, axis=0)[:num_steps]


def _accompaniment(notes: list, melody_instrument: int | None) -> list:
    """The notes that are not the melody (see infer_chords)."""
    if melody_instrument is None and len({n.instrument for n in notes}) > 1:
        melody_instrument = top_instrument(notes)
    if melody_instrument is not None:
        return [n for n in notes if n.instrument != melody_instrument]
    top = {(n.start_step, n.pitch) for n in extract_melody(Score(notes=tuple(notes))).notes}
    return [n for n in notes if (n.start_step, n.pitch) not in top]


def transpose_chords(rows: np.ndarray, semitones: int) -> np.ndarray:
    """Chord rows moved by `semitones` (N.C. rows stay). (steps, 3) → copy."""
    rows = np.array(rows, dtype=np.int16)
    shift = semitones % 12
    chord = rows[:, 0] >= 0
    mask = rows[chord, 1].astype(np.int64)
    rows[chord, 1] = ((mask << shift) | (mask >> (12 - shift))) & 0xFFF
    rows[chord, 0] = (rows[chord, 0] + shift) % 12
    rows[chord, 2] = (rows[chord, 2] + shift) % 12
    return rows


# --- lead sheets ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LeadSheet:
    """A melody and the chord under each of its steps.

    melody: the line (its events are (steps,) int16).
    chords: (steps, 3) int16 chord rows aligned with melody.events.
    """

    melody: MelodyLine
    chords: np.ndarray

    @property
    def piece(self) -> str:
        return self.melody.piece

    @property
    def part(self) -> str:
        return self.melody.part


def score_to_lead_sheets(score: Score, *, steps_per_quarter: int = STEPS_PER_QUARTER,
                         melody_instrument: int | None = None, steps_per_chord: int = 1,
                         gap_bars: float = DEFAULT_GAP_BARS, min_bars: int = DEFAULT_MIN_BARS,
                         min_unique_pitches: int = LEAD_SHEET_MIN_UNIQUE_PITCHES,
                         max_steps: int | None = None, require_chords: bool = True,
                         piece: str = "") -> list[LeadSheet]:
    """Lead sheets of a score (note_seq's extract_lead_sheet_fragments):
    melodies as score_to_melodies finds them, each with the chords under it.
    Chords come from the score's chord symbols when it has any (melodies
    then from every instrument, or `melody_instrument`); otherwise they are
    inferred from the other instruments (infer_chords, `steps_per_chord`)
    and the melody is `melody_instrument`, else the highest-pitched one.
    With `require_chords`, melodies over N.C. only are dropped."""
    grid = score_grid(score, steps_per_quarter)
    if grid is None:
        return []
    end = max([n.end_step for n in grid.notes], default=0)
    quantized = replace(score, notes=grid.notes, steps_per_quarter=steps_per_quarter)
    if score.chords:
        rows = score_chords_per_step(score, end, steps_per_quarter=steps_per_quarter)
    else:
        if melody_instrument is None:
            melody_instrument = top_instrument(grid.notes)
        rows = infer_chords(quantized, steps_per_chord, num_steps=end,
                            melody_instrument=melody_instrument)
    melodies = score_to_melodies(
        quantized, steps_per_quarter=steps_per_quarter, gap_bars=gap_bars, min_bars=min_bars,
        min_unique_pitches=min_unique_pitches, max_steps=max_steps, piece=piece,
        instruments=None if melody_instrument is None else (melody_instrument,))
    sheets = []
    for melody in melodies:
        under = rows[melody.start_step:melody.start_step + len(melody.events)]
        pad = np.tile(np.array(NO_CHORD_ROW, dtype=np.int16), (len(melody.events) - len(under), 1))
        under = np.concatenate([under, pad]) if len(pad) else under.copy()
        if require_chords and not np.any(under[:, 0] >= 0):
            continue
        sheets.append(LeadSheet(melody, under))
    return sheets


def top_instrument(notes) -> int | None:
    """The pitched instrument with the highest mean pitch, None if none."""
    pitches: dict[int, list[int]] = {}
    for note in notes:
        if not note.is_drum:
            pitches.setdefault(note.instrument, []).append(note.pitch)
    return max(pitches, key=lambda i: np.mean(pitches[i])) if pitches else None
