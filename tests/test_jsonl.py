import json

import pytest

from builders import melody, pedal
from mtools.errors import InputFormatError
from mtools.io.jsonl import dict_to_score, iter_jsonl, score_to_dict, score_to_jsonl
from mtools.score import ChordSymbol, KeySignature, Note, PitchBend, make_score, quantize


def test_round_trip_keeps_every_field():
    score = make_score(
        [Note(60, 90, 0.0, 0.5, 40, 1), Note(36, 100, 0.25, 0.3, 0, 2, True)],
        key_signatures=[KeySignature(0.0, 9, 1)], chords=[ChordSymbol(0.0, "Am7")],
        control_changes=pedal(1, 0.0, 1.0), pitch_bends=[PitchBend(0.1, 300, 40, 1)],
        ticks_per_quarter=480, title="x", provenance={"model": "m", "seed": 3})
    line = score_to_jsonl(score)
    assert line.endswith("\n") and line.count("\n") == 1
    back = dict_to_score(json.loads(line))
    assert back == score  # provenance is not part of equality...
    assert back.provenance == {"model": "m", "seed": 3}  # ...but it travels


def test_field_names_are_note_seq_camel_case():
    d = score_to_dict(make_score([Note(60, 90, 0.5, 1.0, 3, 1, True)],
                                 key_signatures=[KeySignature(0.0, 3, 1)]))
    assert d["notes"] == [{"pitch": 60, "velocity": 90, "startTime": 0.5, "endTime": 1.0,
                           "instrument": 1, "program": 3, "isDrum": True}]
    assert d["keySignatures"] == [{"key": "E_FLAT", "mode": "MINOR"}]
    assert d["totalTime"] == 1.0


def test_quantized_steps_are_int64_strings_and_read_back():
    q = quantize(melody("60 _ 62"), 4)
    d = score_to_dict(q)
    assert d["quantizationInfo"] == {"stepsPerQuarter": 4}
    assert d["notes"][1]["quantizedStartStep"] == "2"
    back = dict_to_score(d)
    assert [(n.start_step, n.end_step) for n in back.notes] == [(0, 2), (2, 3)]


def test_reader_accepts_what_protobuf_accepts():
    line = {"notes": [{"pitch": 60, "endTime": 1, "quantizedStartStep": 4,
                       "quantizedEndStep": "8"}],
            "keySignatures": [{"key": 2, "mode": "MINOR"}, {"key": "D_FLAT"}],
            "textAnnotations": [{"text": "C", "annotationType": 1}, {"text": "beat",
                                                                      "annotationType": "BEAT"}]}
    score = dict_to_score(line)
    assert score.notes[0].start_s == 0.0 and score.notes[0].velocity == 0
    assert (score.notes[0].start_step, score.notes[0].end_step) == (4, 8)
    assert [(k.key, k.mode) for k in score.key_signatures] == [(2, 1), (1, 0)]
    assert [c.figure for c in score.chords] == ["C"]


@pytest.mark.parametrize("text, line_no, message", [
    ('{"notes":[]}\n{"notes": [}\n', 2, "Expecting value"),
    ('\n\n[1, 2]\n', 3, "JSON object"),
    ('{"notes":[{"pitch":300,"endTime":1}]}', 1, "out of 0..127"),
    ('{"notes":[{"pitch":60,"startTime":2,"endTime":1}]}', 1, "ends before"),
    ('{"notes":[{"pitch":"high"}]}', 1, "pitch"),
])
def test_bad_lines_name_the_line(text, line_no, message):
    with pytest.raises(InputFormatError, match=f"line {line_no}: .*{message}"):
        list(iter_jsonl(text, "in.jsonl"))


def test_many_scores_one_per_line_blank_lines_skipped():
    text = score_to_jsonl(melody("60")) + "\n" + score_to_jsonl(melody("62 64"))
    assert [len(s.notes) for s in iter_jsonl(text)] == [1, 2]


def test_a_byte_order_mark_before_the_first_line_is_not_an_error():
    text = "\ufeff" + score_to_jsonl(melody("60 62"))
    [score] = list(iter_jsonl(text))
    assert [n.pitch for n in score.notes] == [60, 62]
