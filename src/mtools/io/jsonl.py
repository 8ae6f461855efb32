"""Scores as JSON lines in note_seq's field names.

One whole score per line, a NoteSequence as protobuf's `json_format` writes
it (camelCase names, enum names for keys and modes), so `note_seq` users can
parse a line with `json_format.Parse` and `jq` users can read it. mtools'
own provenance (model, seed, temperature) goes under the single extra key
`"mtools"`, which note_seq's parser skips with `ignore_unknown_fields=True`.
Reading is lenient the way protobuf's parser is: int64 fields may be strings,
enums may be names or numbers, absent fields take proto3 defaults.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from mtools.errors import InputFormatError
from mtools.score import (ChordSymbol, ControlChange, InstrumentInfo, KeySignature, Note,
                          PitchBend, Score, Tempo, TimeSignature)

PROVENANCE_KEY = "mtools"
CHORD_SYMBOL = "CHORD_SYMBOL"
KEY_NAMES = ("C", "C_SHARP", "D", "E_FLAT", "E", "F", "F_SHARP", "G", "A_FLAT", "A",
             "B_FLAT", "B")
_KEY_ALIASES = {"D_FLAT": 1, "D_SHARP": 3, "G_FLAT": 6, "G_SHARP": 8, "A_SHARP": 10}
MODE_NAMES = ("MAJOR", "MINOR", "NOT_SPECIFIED", "MIXOLYDIAN", "DORIAN", "PHRYGIAN",
              "LYDIAN", "LOCRIAN")


def _drop_defaults(entry: dict) -> dict:
    """proto3 JSON omits zero values; do the same to keep lines short."""
    return {k: v for k, v in entry.items() if v not in (0, 0.0, False, "", None)}


def score_to_dict(score: Score) -> dict:
    """The note_seq JSON object for a score (plus the provenance key)."""
    out: dict = {}
    if score.ticks_per_quarter:
        out["ticksPerQuarter"] = score.ticks_per_quarter
    if score.time_signatures:
        out["timeSignatures"] = [_drop_defaults({"time": t.time_s, "numerator": t.numerator,
                                                 "denominator": t.denominator})
                                 for t in score.time_signatures]
    if score.key_signatures:
        out["keySignatures"] = [_drop_defaults({"time": k.time_s, "key": KEY_NAMES[k.key % 12],
                                                "mode": MODE_NAMES[k.mode]})
                                for k in score.key_signatures]
    if score.tempos:
        out["tempos"] = [_drop_defaults({"time": t.time_s, "qpm": t.qpm}) for t in score.tempos]
    if score.notes:
        out["notes"] = [_note_dict(n) for n in score.notes]
    out["totalTime"] = score.total_s
    if score.steps_per_quarter:
        out["totalQuantizedSteps"] = str(max((n.end_step or 0 for n in score.notes), default=0))
        out["quantizationInfo"] = {"stepsPerQuarter": score.steps_per_quarter}
    if score.pitch_bends:
        out["pitchBends"] = [_drop_defaults({
            "time": b.time_s, "bend": b.bend, "instrument": b.instrument,
            "program": b.program, "isDrum": b.is_drum}) for b in score.pitch_bends]
    if score.control_changes:
        out["controlChanges"] = [_drop_defaults({
            "time": c.time_s, "controlNumber": c.number, "controlValue": c.value,
            "instrument": c.instrument, "program": c.program, "isDrum": c.is_drum})
            for c in score.control_changes]
    if score.chords:
        out["textAnnotations"] = [_drop_defaults({"time": c.time_s, "text": c.figure,
                                                  "annotationType": CHORD_SYMBOL})
                                  for c in score.chords]
    if score.title:
        out["sequenceMetadata"] = {"title": score.title}
    if score.instrument_infos:
        out["instrumentInfos"] = [_drop_defaults({"instrument": i.instrument, "name": i.name})
                                  for i in score.instrument_infos]
    if score.provenance:
        out[PROVENANCE_KEY] = score.provenance
    return out


def _note_dict(note: Note) -> dict:
    entry = _drop_defaults({
        "pitch": note.pitch, "velocity": note.velocity, "startTime": note.start_s,
        "endTime": note.end_s, "instrument": note.instrument, "program": note.program,
        "isDrum": note.is_drum})
    if note.start_step is not None:
        # int64 fields are strings in protobuf's JSON mapping.
        if note.start_step:
            entry["quantizedStartStep"] = str(note.start_step)
        entry["quantizedEndStep"] = str(note.end_step)
    return entry


def score_to_jsonl(score: Score) -> str:
    """One line (with its newline) holding the whole score."""
    return json.dumps(score_to_dict(score), separators=(",", ":")) + "\n"


def scores_to_jsonl(scores: Iterable[Score]) -> str:
    return "".join(score_to_jsonl(s) for s in scores)


def _num(entry: dict, key: str, default=0, kind=float):
    value = entry.get(key, default)
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        return kind(value)
    except ValueError:
        raise ValueError(f"field {key!r} must be a number, got {value!r}") from None


def _enum(value, names, aliases=None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in names:
            return names.index(value)
        if aliases and value in aliases:
            return aliases[value]
    raise ValueError(f"unknown enum value {value!r}")


def dict_to_score(obj: dict) -> Score:
    """Inverse of score_to_dict. Raises ValueError/TypeError on bad fields."""
    if not isinstance(obj, dict):
        raise ValueError("a line must hold a JSON object (a NoteSequence)")
    notes = tuple(sorted((_parse_note(n) for n in obj.get("notes", [])),
                         key=lambda n: (n.start_s, n.instrument, n.pitch, n.end_s)))
    quant = obj.get("quantizationInfo") or {}
    spq = int(quant["stepsPerQuarter"]) if "stepsPerQuarter" in quant else None
    total = _num(obj, "totalTime", max((n.end_s for n in notes), default=0.0))
    meta = obj.get("sequenceMetadata") or {}
    return Score(
        notes=notes,
        tempos=_sorted(Tempo(_num(t, "time"), _num(t, "qpm", 120.0)) for t in obj.get("tempos", [])),
        time_signatures=_sorted(TimeSignature(_num(t, "time"), _num(t, "numerator", 4, int),
                                              _num(t, "denominator", 4, int))
                                for t in obj.get("timeSignatures", [])),
        key_signatures=_sorted(KeySignature(_num(k, "time"),
                                            _enum(k.get("key", 0), KEY_NAMES, _KEY_ALIASES),
                                            _enum(k.get("mode", 0), MODE_NAMES))
                               for k in obj.get("keySignatures", [])),
        chords=_sorted(ChordSymbol(_num(a, "time"), str(a.get("text", "")))
                       for a in obj.get("textAnnotations", [])
                       if a.get("annotationType") in (CHORD_SYMBOL, 1)),
        control_changes=_sorted(ControlChange(
            _num(c, "time"), _num(c, "controlNumber", 0, int), _num(c, "controlValue", 0, int),
            _num(c, "program", 0, int), _num(c, "instrument", 0, int), bool(c.get("isDrum")))
            for c in obj.get("controlChanges", [])),
        pitch_bends=_sorted(PitchBend(_num(b, "time"), _num(b, "bend", 0, int),
                                      _num(b, "program", 0, int), _num(b, "instrument", 0, int),
                                      bool(b.get("isDrum")))
                            for b in obj.get("pitchBends", [])),
        instrument_infos=tuple(InstrumentInfo(_num(i, "instrument", 0, int), str(i.get("name", "")))
                               for i in obj.get("instrumentInfos", [])),
        ticks_per_quarter=_num(obj, "ticksPerQuarter", 220, int) or 220,
        total_s=total, steps_per_quarter=spq, title=str(meta.get("title", "")),
        provenance=obj.get(PROVENANCE_KEY) or {})


def _sorted(events) -> tuple:
    return tuple(sorted(events, key=lambda e: e.time_s))


def _parse_note(entry: dict) -> Note:
    if not isinstance(entry, dict):
        raise ValueError("each note must be an object")
    pitch = _num(entry, "pitch", 0, int)
    velocity = _num(entry, "velocity", 0, int)
    start, end = _num(entry, "startTime"), _num(entry, "endTime")
    if not 0 <= pitch <= 127 or not 0 <= velocity <= 127:
        raise ValueError(f"note pitch/velocity out of 0..127: {pitch}/{velocity}")
    if end < start:
        raise ValueError(f"note ends before it starts ({start} > {end})")
    has_steps = "quantizedEndStep" in entry or "quantizedStartStep" in entry
    return Note(pitch, velocity, start, end, _num(entry, "program", 0, int),
                _num(entry, "instrument", 0, int), bool(entry.get("isDrum")),
                _num(entry, "quantizedStartStep", 0, int) if has_steps else None,
                _num(entry, "quantizedEndStep", 0, int) if has_steps else None)


def iter_jsonl(text: str, source: str = "<stdin>") -> Iterator[Score]:
    """Scores from JSONL text, one per non-blank line. A bad line raises
    InputFormatError naming `source` and the 1-based line number. A UTF-8
    byte-order mark (Windows editors write one) is no part of the JSON."""
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield dict_to_score(json.loads(line))
        except (ValueError, TypeError, KeyError) as exc:
            raise InputFormatError(f"{source}: line {number}: not a NoteSequence JSON "
                                   f"line: {exc}") from None
