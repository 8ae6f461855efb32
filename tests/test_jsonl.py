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
    ('{"notes":[{"pitch":Infinity}]}', 1, "'pitch' must be a number"),
    ('{"notes":[{"pitch":60.5}]}', 1, "'pitch' must be a number"),
    ('{"tempos":[1]}', 1, "'tempos' must be a list of objects"),
    ('{"sequenceMetadata":"x"}', 1, "'sequenceMetadata' must be an object"),
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


@pytest.mark.parametrize("tempo", [{"qpm": 0}, {"qpm": -5}, {"qpm": "inf"}, {"qpm": "nan"}])
def test_a_tempo_must_be_a_finite_qpm_above_zero(tempo):
    line = json.dumps({"tempos": [tempo], "notes": [{"pitch": 60, "endTime": 1}]})
    with pytest.raises(InputFormatError, match="line 1: .*tempo qpm must be a finite number "
                                               "above 0") as caught:
        list(iter_jsonl(line))
    assert caught.value.exit_code == 65
    assert dict_to_score({"tempos": [{}]}).tempos[0].qpm == 120.0  # absent: the default


@pytest.mark.parametrize("line, message", [
    ({"notes": [{"pitch": 60, "endTime": 1, "program": 300}]}, "'program' out of 0..127: 300"),
    ({"notes": [{"pitch": 60, "endTime": 1, "instrument": -1}]}, "'instrument' out of 0"),
    ({"notes": [{"pitch": 60, "endTime": 1, "isDrum": "false"}]}, "'isDrum' must be true or"),
    ({"notes": [{"pitch": 60, "startTime": -1, "endTime": 1}]}, "'startTime' must be a finite"),
    ({"timeSignatures": [{"numerator": 3, "denominator": 5}]}, "3/5: the denominator must be"),
    ({"timeSignatures": [{"numerator": 0, "denominator": 0}]}, "'numerator' out of 1..255"),
    ({"timeSignatures": [{"numerator": 300}]}, "'numerator' out of 1..255"),
    ({"keySignatures": [{"mode": 9}]}, "'mode' out of 0..7: 9"),
    ({"keySignatures": [{"key": 12}]}, "'key' out of 0..11: 12"),
    ({"controlChanges": [{"controlNumber": 64, "controlValue": 128}]}, "'controlValue' out of"),
    ({"controlChanges": [{"controlNumber": 200}]}, "'controlNumber' out of 0..127"),
    ({"pitchBends": [{"bend": 8192}]}, "'bend' out of -8192..8191"),
    ({"pitchBends": [{"bend": 1, "program": 128}]}, "'program' out of 0..127"),
])
def test_values_a_midi_file_cannot_hold_are_refused(line, message):
    with pytest.raises(InputFormatError, match=f"line 1: .*{message}"):
        list(iter_jsonl(json.dumps(line)))


def test_the_edges_of_midi_ranges_are_accepted():
    score = dict_to_score({
        "notes": [{"pitch": 127, "velocity": 127, "endTime": 1, "program": 127, "isDrum": True}],
        "timeSignatures": [{"numerator": 255, "denominator": 1}, {"time": 1, "denominator": 64}],
        "keySignatures": [{"key": 11, "mode": 7}], "pitchBends": [{"bend": -8192}],
        "ticksPerQuarter": 32767})
    assert score.notes[0].program == 127 and score.notes[0].is_drum
    assert [(t.numerator, t.denominator) for t in score.time_signatures] == [(255, 1), (4, 64)]


def test_a_resolution_midi_cannot_store_falls_back_to_220_as_the_midi_reader_does():
    assert dict_to_score({"ticksPerQuarter": 40000}).ticks_per_quarter == 220


def test_proto_field_names_read_as_their_json_names():
    # protobuf's JSON parser takes both; MessageToJson(preserving_proto_field_name=True)
    # writes these
    score = dict_to_score({"total_time": 1.5, "tempos": [{"qpm": 90}], "notes": [
        {"pitch": 60, "velocity": 80, "start_time": 1.0, "end_time": 1.5, "is_drum": False}],
        "mtools": {"model_spec": "m"}})
    assert (score.notes[0].start_s, score.notes[0].end_s, score.total_s) == (1.0, 1.5, 1.5)
    assert score.provenance == {"model_spec": "m"}


@pytest.mark.parametrize("line", ['{"foo": 1}', '{"name": "x", "data": [1, 2], "version": 3}'])
def test_an_object_with_none_of_a_scores_keys_is_refused(line):
    with pytest.raises(InputFormatError, match="line 1: .*none of a score's keys \\(notes, "
                                               "tempos, .*only (foo|data, name, version)$"):
        list(iter_jsonl(line, "junk.json"))


@pytest.mark.parametrize("line", ['{}', '{"notes": []}', '{"totalTime": 0}',
                                  '{"mtools": {"model": "m"}}', '{"filename": "a.mid"}'])
def test_a_score_with_no_notes_is_still_a_score(line):
    [score] = list(iter_jsonl(line))
    assert score.notes == ()
