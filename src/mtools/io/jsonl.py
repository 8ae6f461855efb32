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
import math
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
# NoteSequence's fields in protobuf's JSON names, and ours: a line must have
# at least one (or none at all: `{}` is an empty NoteSequence).
SCORE_KEYS = ("notes", "tempos", "timeSignatures", "keySignatures", "totalTime",
              "ticksPerQuarter", "textAnnotations", "controlChanges", "pitchBends",
              "instrumentInfos", "quantizationInfo", "totalQuantizedSteps",
              "sequenceMetadata", "id", "filename", "referenceNumber", "collectionName",
              "partInfos", "sourceInfo", "sectionAnnotations", "sectionGroups",
              "subsequenceInfo", PROVENANCE_KEY)
MIDI_7BIT = (0, 127)  # program, controller number and value
MIDI_BEND = (-8192, 8191)
MAX_TICKS_PER_QUARTER = 0x7FFF  # the MIDI header's top bit means SMPTE time instead


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
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError  # int() would cut 60.7 to 60 without a word
        return kind(value)
    except (ValueError, OverflowError):
        raise ValueError(f"field {key!r} must be a number, got {value!r}") from None


def _int_in(entry: dict, key: str, bounds: tuple[int, int], default: int = 0) -> int:
    """An integer field that must lie in bounds (low, high), both included."""
    value = _num(entry, key, default, int)
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"field {key!r} out of {bounds[0]}..{bounds[1]}: {value}")
    return value


def _time(entry: dict, key: str = "time", default: float = 0.0) -> float:
    """A time in seconds: finite and not negative."""
    value = _num(entry, key, default)
    if not 0.0 <= value < math.inf:
        raise ValueError(f"field {key!r} must be a finite time >= 0 seconds, got {value}")
    return value


def _bool(entry: dict, key: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):  # bool("false") is True
        raise ValueError(f"field {key!r} must be true or false, got {value!r}")
    return value


def _entries(obj: dict, key: str) -> list[dict]:
    """The objects of a repeated field (absent: none)."""
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise ValueError(f"field {key!r} must be a list of objects")
    return value


def _object(obj: dict, key: str) -> dict:
    value = obj.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"field {key!r} must be an object")
    return value


def _enum(entry: dict, key: str, names, aliases=None) -> int:
    value = entry.get(key, 0)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return value
        raise ValueError(f"field {key!r} out of 0..{len(names) - 1}: {value}")
    if isinstance(value, str):
        if value in names:
            return names.index(value)
        if aliases and value in aliases:
            return aliases[value]
    raise ValueError(f"field {key!r}: unknown enum value {value!r}")


def dict_to_score(obj: dict) -> Score:
    """Inverse of score_to_dict. Raises ValueError/TypeError on bad fields,
    among them any value a MIDI file cannot hold."""
    if not isinstance(obj, dict):
        raise ValueError("a line must hold a JSON object (a NoteSequence)")
    if _has_proto_names(obj):
        obj = _camel_keys(obj)
    if obj and not any(key in obj for key in SCORE_KEYS):
        raise ValueError(f"it has none of a score's keys ({', '.join(SCORE_KEYS[:5])}, ...), "
                         f"only {', '.join(sorted(obj)[:5])}{', ...' if len(obj) > 5 else ''}")
    notes = tuple(sorted((_parse_note(n) for n in _entries(obj, "notes")),
                         key=lambda n: (n.start_s, n.instrument, n.pitch, n.end_s)))
    quant = _object(obj, "quantizationInfo")
    spq = int(quant["stepsPerQuarter"]) if "stepsPerQuarter" in quant else None
    total = _time(obj, "totalTime", max((n.end_s for n in notes), default=0.0))
    return Score(
        notes=notes,
        tempos=_sorted(_parse_tempo(t) for t in _entries(obj, "tempos")),
        time_signatures=_sorted(_parse_time_signature(t) for t in _entries(obj, "timeSignatures")),
        key_signatures=_sorted(KeySignature(_time(k),
                                            _enum(k, "key", KEY_NAMES, _KEY_ALIASES),
                                            _enum(k, "mode", MODE_NAMES))
                               for k in _entries(obj, "keySignatures")),
        chords=_sorted(ChordSymbol(_time(a), str(a.get("text", "")))
                       for a in _entries(obj, "textAnnotations")
                       if a.get("annotationType") in (CHORD_SYMBOL, 1)),
        control_changes=_sorted(ControlChange(
            _time(c), _int_in(c, "controlNumber", MIDI_7BIT), _int_in(c, "controlValue", MIDI_7BIT),
            _int_in(c, "program", MIDI_7BIT), _instrument(c), _bool(c, "isDrum"))
            for c in _entries(obj, "controlChanges")),
        pitch_bends=_sorted(PitchBend(_time(b), _int_in(b, "bend", MIDI_BEND),
                                      _int_in(b, "program", MIDI_7BIT), _instrument(b),
                                      _bool(b, "isDrum"))
                            for b in _entries(obj, "pitchBends")),
        instrument_infos=tuple(InstrumentInfo(_instrument(i), str(i.get("name", "")))
                               for i in _entries(obj, "instrumentInfos")),
        ticks_per_quarter=_ticks_per_quarter(obj),
        total_s=total, steps_per_quarter=spq,
        title=str(_object(obj, "sequenceMetadata").get("title", "")),
        provenance=obj.get(PROVENANCE_KEY) or {})


def _camel_keys(value):
    """Protobuf's JSON parser takes a NoteSequence's fields under their
    proto names too (`start_time`, what MessageToJson writes with
    preserving_proto_field_name): every key as its JSON (camelCase) name,
    the `mtools` extra left as it is."""
    if isinstance(value, list):
        return [_camel_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    renamed = {}
    for key, item in value.items():
        if isinstance(key, str) and "_" in key and key != PROVENANCE_KEY:
            head, *rest = key.split("_")
            key = head + "".join(word[:1].upper() + word[1:] for word in rest)
        renamed[key] = item if key == PROVENANCE_KEY else _camel_keys(item)
    return renamed


def _has_proto_names(obj: dict, sample: int = 16) -> bool:
    """Whether a line names its fields the proto way (`start_time`): a
    writer uses one way throughout, so the top level, its objects and the
    first `sample` entries of each list tell (renaming every note of every
    line would cost a fifth of the parse)."""
    values = [value for key, value in obj.items() if key != PROVENANCE_KEY]
    parts = [obj] + [value for value in values if isinstance(value, dict)] + \
        [entry for value in values if isinstance(value, list)
         for entry in value[:sample] if isinstance(entry, dict)]
    return any("_" in key and key != PROVENANCE_KEY for part in parts for key in part)


def _ticks_per_quarter(obj: dict) -> int:
    """The resolution to write MIDI at: the score's, else 220 (note_seq's
    default; also for a value MIDI cannot store, as the MIDI reader does
    for SMPTE time)."""
    value = _num(obj, "ticksPerQuarter", 220, int)
    return value if 0 < value <= MAX_TICKS_PER_QUARTER else 220


def _sorted(events) -> tuple:
    return tuple(sorted(events, key=lambda e: e.time_s))


def _instrument(entry: dict) -> int:
    """note_seq's instrument: an index (a track), never negative."""
    return _int_in(entry, "instrument", (0, 2 ** 31 - 1))


def _parse_tempo(entry: dict) -> Tempo:
    qpm = _num(entry, "qpm", 120.0)
    if not 0.0 < qpm < math.inf:
        raise ValueError(f"tempo qpm must be a finite number above 0, got {qpm}")
    return Tempo(_time(entry), qpm)


def _parse_time_signature(entry: dict) -> TimeSignature:
    """A meter as MIDI stores it: a numerator byte, and the denominator as a
    power of two (its exponent in a byte)."""
    numerator = _int_in(entry, "numerator", (1, 255), 4)
    denominator = _num(entry, "denominator", 4, int)
    if denominator < 1 or denominator & (denominator - 1) or denominator.bit_length() > 256:
        raise ValueError(f"time signature {numerator}/{denominator}: the denominator must be "
                         f"a power of two (1, 2, 4, 8, ...)")
    return TimeSignature(_time(entry), numerator, denominator)


def _parse_note(entry: dict) -> Note:
    pitch = _num(entry, "pitch", 0, int)
    velocity = _num(entry, "velocity", 0, int)
    start, end = _time(entry, "startTime"), _time(entry, "endTime")
    if not 0 <= pitch <= 127 or not 0 <= velocity <= 127:
        raise ValueError(f"note pitch/velocity out of 0..127: {pitch}/{velocity}")
    if end < start:
        raise ValueError(f"note ends before it starts ({start} > {end})")
    has_steps = "quantizedEndStep" in entry or "quantizedStartStep" in entry
    return Note(pitch, velocity, start, end, _int_in(entry, "program", MIDI_7BIT),
                _instrument(entry), _bool(entry, "isDrum"),
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
