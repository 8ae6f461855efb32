import pytest

from builders import chord_notes, melody, pedal
from mtools.score import (KeySignature, Note, Tempo, TempoMap, apply_sustain, extract_melody,
                          make_score, quantize, transpose, trim, unquantize)


def test_tempo_map_converts_both_ways_across_changes():
    tmap = TempoMap([Tempo(0.0, 120.0), Tempo(2.0, 60.0)])
    assert tmap.quarters_at(2.0) == pytest.approx(4.0)
    assert tmap.quarters_at(3.0) == pytest.approx(5.0)
    assert tmap.seconds_at(5.0) == pytest.approx(3.0)
    assert tmap.seconds_at(tmap.quarters_at(2.7)) == pytest.approx(2.7)


def test_quantize_snaps_to_sixteenths_and_unquantize_inverts():
    score = make_score([Note(60, 80, 0.02, 0.23), Note(62, 80, 0.26, 0.49)],
                       tempos=[Tempo(0.0, 120.0)])
    q = quantize(score, 4)
    assert [(n.start_step, n.end_step) for n in q.notes] == [(0, 2), (2, 4)]
    assert [n.start_s for n in q.notes] == pytest.approx([0.0, 0.25])
    back = unquantize(q)
    assert back.steps_per_quarter is None
    assert [n.start_s for n in back.notes] == pytest.approx([0.0, 0.25])
    assert [n.end_s for n in back.notes] == pytest.approx([0.25, 0.5])
    assert [n.end_s for n in unquantize(q, qpm=60.0).notes] == pytest.approx([0.5, 1.0])


def test_quantize_never_makes_a_note_shorter_than_one_step():
    q = quantize(make_score([Note(60, 80, 0.0, 0.01)]), 4)
    assert (q.notes[0].start_step, q.notes[0].end_step) == (0, 1)


def test_quantize_follows_tempo_changes():
    score = make_score([Note(60, 80, 2.0, 2.5)], tempos=[Tempo(0.0, 120.0), Tempo(1.0, 60.0)])
    note = quantize(score, 4).notes[0]
    # 1 s at 120 qpm = 2 quarters, then 1 s at 60 qpm = 1 quarter: step 12.
    assert (note.start_step, note.end_step) == (12, 14)


def test_transpose_moves_pitches_and_key_but_not_drums():
    score = make_score([Note(60, 80, 0, 1), Note(36, 80, 0, 1, is_drum=True)],
                       key_signatures=[KeySignature(0.0, 0, 0)])
    up = transpose(score, 3)
    assert sorted(n.pitch for n in up.notes) == [36, 63]
    assert up.key_signatures[0].key == 3
    with pytest.raises(ValueError, match="outside"):
        transpose(score, 100)


def test_extract_melody_keeps_the_top_line():
    notes = chord_notes([48, 52, 55], 0.0, 2.0) + [Note(72, 80, 0.5, 1.0), Note(50, 80, 1.5, 2.5)]
    line = extract_melody(make_score(notes)).notes
    assert [(n.pitch, n.start_s, n.end_s) for n in line] == [
        (55, 0.0, 0.5), (72, 0.5, 1.0)]  # 50 starts under the held 55: dropped
    assert all(a.end_s <= b.start_s for a, b in zip(line, line[1:]))


def test_extract_melody_ignores_drums_and_can_pick_an_instrument():
    notes = [Note(80, 80, 0, 1, is_drum=True), Note(60, 80, 0, 1, instrument=0),
             Note(70, 80, 0, 1, instrument=1)]
    assert [n.pitch for n in extract_melody(make_score(notes)).notes] == [70]
    assert [n.pitch for n in extract_melody(make_score(notes), instrument=0).notes] == [60]


def test_sustain_holds_notes_until_pedal_up_or_restrike():
    notes = [Note(60, 80, 0.0, 0.5), Note(64, 80, 0.2, 0.4), Note(60, 80, 1.0, 1.2),
             Note(67, 80, 2.5, 2.6)]
    held = apply_sustain(make_score(notes, control_changes=pedal(0, 0.1, 2.0)))
    ends = {(n.pitch, n.start_s): n.end_s for n in held.notes}
    assert ends[(60, 0.0)] == 1.0  # cut by the re-strike of the same key
    assert ends[(64, 0.2)] == 2.0  # held to pedal up
    assert ends[(60, 1.0)] == 2.0
    assert ends[(67, 2.5)] == 2.6  # after the pedal: unchanged
    assert len(held.control_changes) == 2


def test_sustain_on_one_track_leaves_the_other_alone():
    notes = [Note(60, 80, 0.0, 0.5, instrument=0), Note(62, 80, 0.0, 0.5, instrument=1)]
    held = apply_sustain(make_score(notes, control_changes=pedal(1, 0.0, 3.0)))
    assert sorted((n.instrument, n.end_s) for n in held.notes) == [(0, 0.5), (1, 3.0)]


def test_trim_shifts_notes_and_carries_the_tempo_in_force():
    score = melody("60 62 64 65 67 69 71 72", qpm=60)
    cut = trim(score, 1.0, 2.0)
    assert [n.pitch for n in cut.notes] == [67, 69, 71, 72]
    assert cut.notes[0].start_s == pytest.approx(0.0)
    assert cut.tempos[0].qpm == 60 and cut.tempos[0].time_s == 0.0
    assert cut.total_s == pytest.approx(1.0)


def test_builder_reads_holds_and_rests():
    score = melody("60 _ - 62", qpm=120)
    assert [(n.pitch, n.start_s, n.end_s) for n in score.notes] == [
        (60, 0.0, 0.25), (62, 0.375, 0.5)]


def test_quantize_rounds_halves_up_as_note_seq_does():
    # At 120 qpm a 16th is 0.125 s: onsets half a step past 0, 2 and 4 steps.
    notes = [Note(60, 80, 0.0625, 0.3), Note(62, 80, 0.3125, 0.55), Note(64, 80, 0.5625, 0.8)]
    grid = quantize(make_score(notes, tempos=(Tempo(0.0, 120.0),)), 4)
    assert [n.start_step for n in grid.notes] == [1, 3, 5]
