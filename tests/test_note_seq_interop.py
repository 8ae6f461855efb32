"""JSONL and MIDI interop with Magenta's note_seq, checked against note_seq
itself (its NoteSequence proto and protobuf's json_format parser).

note_seq is not a project dependency: these tests skip without it. They run
in the benchmark venv (benchmarks/setup_venv.sh):

    .venv-bench/bin/python -m pytest -q tests/test_note_seq_interop.py
"""

import json
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydub warns that ffmpeg is absent; not needed here
    note_seq = pytest.importorskip("note_seq")
from google.protobuf import json_format  # noqa: E402  (note_seq depends on protobuf)
from note_seq import midi_io, sequences_lib, testing_lib  # noqa: E402
from note_seq.protobuf import music_pb2  # noqa: E402

from builders import chord_notes, drums, melody, pedal  # noqa: E402
from mtools.io.jsonl import dict_to_score, iter_jsonl, score_to_jsonl  # noqa: E402
from mtools.io.midi import midi_to_score, score_to_midi  # noqa: E402
from mtools.score import (ChordSymbol, InstrumentInfo, KeySignature, PitchBend, Tempo,  # noqa: E402
                          TimeSignature, make_score, quantize)

NoteSequence = music_pb2.NoteSequence
CHORD_SYMBOL = NoteSequence.TextAnnotation.CHORD_SYMBOL


def band(**fields):
    """Flute melody, a piano chord under a sustain pedal and a drum kit, with
    tempo, meter and key changes, chord symbols, a bend and names."""
    flute = melody("72 _ 74 - 76 77 _ _ 79", qpm=100.0, program=73, instrument=0)
    piano = chord_notes([48, 52, 55], 0.0, 1.2, program=0, instrument=1)
    kit = drums([(36, 0.0), (42, 0.3), (38, 0.6)]).notes  # instrument 9, is_drum
    return make_score(
        [*flute.notes, *piano, *kit],
        tempos=[Tempo(0.0, 100.0), Tempo(1.2, 90.0)],
        time_signatures=[TimeSignature(0.0, 4, 4), TimeSignature(1.2, 6, 8)],
        key_signatures=[KeySignature(0.0, 7, 0), KeySignature(1.2, 9, 1)],
        chords=[ChordSymbol(0.0, "C"), ChordSymbol(1.2, "Am7")],
        control_changes=pedal(1, 0.1, 1.0),
        pitch_bends=[PitchBend(0.5, -2048, 73, 0)],
        instrument_infos=(InstrumentInfo(0, "flute"), InstrumentInfo(1, "piano")),
        ticks_per_quarter=480, title="interop", **fields)


def parse_line(line: str, **kwargs) -> NoteSequence:
    return json_format.Parse(line, NoteSequence(), **kwargs)


def one_line_json(sequence: NoteSequence) -> str:
    """A NoteSequence as a JSONL line, the way a note_seq user would write it."""
    return json_format.MessageToJson(sequence, indent=None)


def test_mtools_line_parses_as_a_note_sequence_field_by_field():
    score = band()
    ns = parse_line(score_to_jsonl(score))  # strict: no unknown field in a plain line
    assert [(n.pitch, n.velocity, n.start_time, n.end_time, n.program, n.instrument, n.is_drum)
            for n in ns.notes] == [
        (n.pitch, n.velocity, n.start_s, n.end_s, n.program, n.instrument, n.is_drum)
        for n in score.notes]
    assert any(n.is_drum for n in ns.notes) and {n.program for n in ns.notes} == {0, 73}
    assert [(t.time, t.qpm) for t in ns.tempos] == [(0.0, 100.0), (1.2, 90.0)]
    assert [(t.time, t.numerator, t.denominator) for t in ns.time_signatures] == [
        (0.0, 4, 4), (1.2, 6, 8)]
    assert [(k.time, k.key, k.mode) for k in ns.key_signatures] == [
        (0.0, NoteSequence.KeySignature.G, NoteSequence.KeySignature.MAJOR),
        (1.2, NoteSequence.KeySignature.A, NoteSequence.KeySignature.MINOR)]
    assert [(a.time, a.text, a.annotation_type) for a in ns.text_annotations] == [
        (0.0, "C", CHORD_SYMBOL), (1.2, "Am7", CHORD_SYMBOL)]
    assert [(c.time, c.control_number, c.control_value, c.instrument)
            for c in ns.control_changes] == [(0.1, 64, 127, 1), (1.0, 64, 0, 1)]
    assert [(b.time, b.bend, b.program) for b in ns.pitch_bends] == [(0.5, -2048, 73)]
    assert [(i.instrument, i.name) for i in ns.instrument_infos] == [(0, "flute"), (1, "piano")]
    assert ns.sequence_metadata.title == "interop"
    assert ns.ticks_per_quarter == 480 and ns.total_time == score.total_s


def test_round_trip_through_note_seq_json_is_exact():
    score = band()
    ns = parse_line(score_to_jsonl(score))
    assert next(iter_jsonl(one_line_json(ns))) == score


def test_quantized_score_round_trips_with_int64_steps():
    score = quantize(band(), 4)
    ns = parse_line(score_to_jsonl(score))
    assert ns.quantization_info.steps_per_quarter == 4
    assert [(n.quantized_start_step, n.quantized_end_step) for n in ns.notes] == [
        (n.start_step, n.end_step) for n in score.notes]
    assert ns.total_quantized_steps == max(n.end_step for n in score.notes)
    assert next(iter_jsonl(one_line_json(ns))) == score


def test_provenance_key_needs_ignore_unknown_fields():
    # protobuf's JSON parser rejects unknown keys unless told to skip them,
    # so a line carrying mtools' provenance parses only with
    # ignore_unknown_fields=True; a line without provenance parses either way.
    score = band(provenance={"model": "melody_rnn", "seed": 7, "temperature": 1.0})
    line = score_to_jsonl(score)
    assert json.loads(line)["mtools"] == score.provenance
    with pytest.raises(json_format.ParseError, match="mtools"):
        parse_line(line)
    ns = parse_line(line, ignore_unknown_fields=True)
    assert ns == parse_line(score_to_jsonl(band()))


def note_seq_sequence() -> NoteSequence:
    """A NoteSequence made with note_seq's own helpers, including enum
    aliases and fields mtools does not model."""
    ns = NoteSequence(ticks_per_quarter=220, filename="take.mid", id="/id/1")
    ns.tempos.add(time=0.0, qpm=132.0)
    ns.time_signatures.add(time=0.0, numerator=3, denominator=4)
    testing_lib.add_track_to_sequence(ns, 0, [(67, 100, 0.0, 0.5), (69, 90, 0.5, 1.25)],
                                      program=40)
    testing_lib.add_track_to_sequence(ns, 9, [(36, 110, 0.0, 0.1), (38, 100, 0.5, 0.6)],
                                      is_drum=True)
    testing_lib.add_chords_to_sequence(ns, [("G", 0.0), ("D7/F#", 0.5)])
    ns.text_annotations.add(time=0.25, text="1", annotation_type=NoteSequence.TextAnnotation.BEAT)
    # 3 and 10 are written as D_SHARP and A_SHARP: the names mtools must alias.
    testing_lib.add_key_signatures_to_sequence(ns, [(NoteSequence.KeySignature.E_FLAT, 0.0),
                                                    (NoteSequence.KeySignature.B_FLAT, 1.0)])
    ns.key_signatures[1].mode = NoteSequence.KeySignature.MINOR
    testing_lib.add_control_changes_to_sequence(ns, 0, [(0.2, 7, 100)])
    testing_lib.add_pitch_bends_to_sequence(ns, 0, 40, [(0.3, 1024)])
    ns.part_infos.add(part=0, name="violin")
    ns.section_annotations.add(time=0.0, section_id=1)
    ns.sequence_metadata.title = "made by note_seq"
    return ns


def test_note_seq_json_reads_into_a_score():
    ns = note_seq_sequence()
    line = one_line_json(ns)
    assert '"D_SHARP"' in line and '"A_SHARP"' in line
    score = next(iter_jsonl(line))
    assert [(n.pitch, n.velocity, n.start_s, n.end_s, n.program, n.instrument, n.is_drum)
            for n in score.notes] == [
        (67, 100, 0.0, 0.5, 40, 0, False), (36, 110, 0.0, 0.1, 0, 9, True),
        (69, 90, 0.5, 1.25, 40, 0, False), (38, 100, 0.5, 0.6, 0, 9, True)]
    assert score.tempos == (Tempo(0.0, 132.0),)
    assert score.time_signatures == (TimeSignature(0.0, 3, 4),)
    assert score.key_signatures == (KeySignature(0.0, 3, 0), KeySignature(1.0, 10, 1))
    assert score.chords == (ChordSymbol(0.0, "G"), ChordSymbol(0.5, "D7/F#"))  # not the beat
    assert [(c.time_s, c.number, c.value) for c in score.control_changes] == [(0.2, 7, 100)]
    assert [(b.time_s, b.bend, b.program) for b in score.pitch_bends] == [(0.3, 1024, 40)]
    assert score.title == "made by note_seq"
    assert score.ticks_per_quarter == 220 and score.total_s == 1.25


def test_note_seq_quantized_json_reads_steps():
    quantized = sequences_lib.quantize_note_sequence(note_seq_sequence(), steps_per_quarter=4)
    score = next(iter_jsonl(one_line_json(quantized)))
    assert score.steps_per_quarter == 4
    assert sorted((n.pitch, n.start_step, n.end_step) for n in score.notes) == sorted(
        (n.pitch, n.quantized_start_step, n.quantized_end_step) for n in quantized.notes)


def test_note_seq_reads_mtools_midi_as_mtools_does():
    data = score_to_midi(band())
    ns = midi_io.midi_to_note_sequence(data)
    mine = midi_to_score(data)

    def rounded(rows):  # (time, ...) rows, times to the microsecond
        return sorted((round(time, 6), *rest) for time, *rest in rows)

    assert rounded((n.start_time, round(n.end_time, 6), n.pitch, n.velocity, n.program,
                    n.is_drum) for n in ns.notes) == rounded(
        (n.start_s, round(n.end_s, 6), n.pitch, n.velocity, n.program, n.is_drum)
        for n in mine.notes)
    assert rounded((t.time, round(t.qpm, 6)) for t in ns.tempos) == rounded(
        (t.time_s, round(t.qpm, 6)) for t in mine.tempos)
    assert rounded((t.time, t.numerator, t.denominator) for t in ns.time_signatures) == rounded(
        (t.time_s, t.numerator, t.denominator) for t in mine.time_signatures)
    assert rounded((k.time, k.key, k.mode) for k in ns.key_signatures) == rounded(
        (k.time_s, k.key, k.mode) for k in mine.key_signatures)
