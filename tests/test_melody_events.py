"""Melody, drum and chord event representations (mtools.models.events/chords)."""

from __future__ import annotations

import numpy as np
import pytest

from builders import chord_notes, drums, melody
from mtools.models.chords import (NO_CHORD_ROW, ChordSymbolError, chord_name, chord_quality,
                                  chord_row, infer_chords, parse_chord, score_chords_per_step,
                                  score_to_lead_sheets, transpose_chords)
from mtools.models.events import (DRUM_TYPE_PITCHES, NO_EVENT, NOTE_OFF, bitmask_pitches,
                                  drum_bitmask, drum_class, drums_to_notes, melody_to_notes,
                                  primer_drum_track, primer_melody, score_to_drum_tracks,
                                  score_to_melodies, set_melody_length, squash_melody)
from mtools.score import ChordSymbol, Note, Tempo, TimeSignature, make_score

N, X = NO_EVENT, NOTE_OFF
STEP_S = 0.125  # a 16th at 120 qpm
ANY = dict(min_bars=0, min_unique_pitches=0)


def events_of(score, **kw):
    return [m.events.tolist() for m in score_to_melodies(score, **{**ANY, **kw})]


def test_note_off_and_no_event_placement():
    assert events_of(melody("60 _ 62 - 64")) == [[60, N, 62, X, 64]]


def test_line_starts_on_the_bar_of_its_first_note():
    (line,) = score_to_melodies(melody("- - - - - - - - - - - - - - - - - - 60 62"), **ANY)
    assert line.start_step == 16 and line.events.tolist() == [N, N, 60, 62]
    assert line.steps_per_bar == 16 and line.time_signature == (4, 4)


def test_a_bar_of_silence_splits_the_melody():
    text = "60 62 64 65 " + "- " * 32 + "67 69"
    first, second = score_to_melodies(melody(text), **ANY)
    assert first.start_step == 0 and first.events.tolist() == [60, 62, 64, 65]
    assert second.start_step == 32 and second.events.tolist() == [N, N, N, N, 67, 69]


def test_a_shorter_silence_does_not_split():
    text = "60 62 64 65 " + "- " * 15 + "67"
    assert events_of(melody(text)) == [[60, 62, 64, 65, X] + [N] * 14 + [67]]


def test_polyphony_keeps_the_highest_note_or_skips_the_instrument():
    score = make_score(chord_notes([60, 64, 67], 0.0, 0.25) + chord_notes([62], 0.25, 0.5))
    assert events_of(score) == [[67, N, 62, N]]
    assert events_of(score, ignore_polyphony=False) == []


def test_a_later_onset_cuts_the_sounding_note():
    score = make_score([Note(60, 90, 0.0, 1.0), Note(55, 90, 0.5, 0.75)])
    assert events_of(score) == [[60, N, N, N, 55, N]]


def test_filters_drop_short_and_monotonous_lines_and_truncate():
    score = melody(" ".join(["60 62 64 65 67"] * 8))  # 40 steps = 2.5 bars
    assert score_to_melodies(score, min_bars=3, min_unique_pitches=0) == []
    assert score_to_melodies(score, min_bars=2, min_unique_pitches=6) == []
    (line,) = score_to_melodies(score, min_bars=2, min_unique_pitches=5, max_steps=7)
    assert line.events.tolist() == [60, 62, 64, 65, 67, 60, 62]


def test_melodies_are_per_instrument_and_ignore_drums():
    score = make_score(melody("60 62").notes + melody("- 48 50", instrument=1).notes
                       + drums([(36, 0.0)]).notes)
    lines = score_to_melodies(score, **ANY)
    assert [m.events.tolist() for m in lines] == [[60, 62], [N, 48, 50]]


def test_meter_sets_steps_per_bar():
    score = melody("60 62 64", time_signatures=[TimeSignature(0.0, 6, 8)])
    assert score_to_melodies(score, **ANY)[0].steps_per_bar == 12


def test_events_to_notes_to_events_round_trip():
    events = np.array([N, N, 60, N, X, 62, 64, N, N, X, N, 65], dtype=np.int16)
    notes = melody_to_notes(events, step_s=STEP_S, velocity=77, program=5)
    assert [(n.pitch, n.start_s, n.end_s) for n in notes] == [
        (60, 0.25, 0.5), (62, 0.625, 0.75), (64, 0.75, 1.125), (65, 1.375, 1.5)]
    assert notes[0].velocity == 77 and notes[0].program == 5
    score = make_score(notes, tempos=[Tempo(0.0, 120.0)])
    assert events_of(score) == [events.tolist()]


def test_primer_is_the_top_line_of_everything_without_gap_splitting():
    bass = [Note(36, 80, 0.0, 4.0, 0, 1)]
    tune = melody("- - 60 62 " + "- " * 40 + "64").notes
    primer = primer_melody(make_score(bass + list(tune), tempos=[Tempo(0.0, 120.0)]))
    assert primer.start_step == 0 and len(primer.events) == 45
    assert primer.events[:5].tolist() == [36, N, 60, 62, X]
    assert primer.events[-1] == 64 and primer.qpm == 120.0


def test_set_melody_length_ends_a_sustained_note():
    assert set_melody_length(np.array([60, N]), 4).tolist() == [60, N, X, N]
    assert set_melody_length(np.array([60, X]), 4).tolist() == [60, X, N, N]
    assert set_melody_length(np.array([60, N, 62]), 2).tolist() == [60, N]


def test_squash_moves_into_key_and_range():
    g_major = np.array([67, 69, 71, 72, 74, 76, 78, X, 91], dtype=np.int16)
    squashed, amount = squash_melody(g_major, 48, 84, transpose_to_key=0)
    assert amount % 12 == 5  # G → C
    assert all(48 <= p < 84 for p in squashed[squashed >= 0])


# --- drums ---------------------------------------------------------------------------


@pytest.mark.parametrize("pitch, klass", [
    (36, 0), (35, 0), (38, 1), (40, 1), (37, 1), (42, 2), (44, 2), (22, 2), (46, 3), (26, 3),
    (45, 4), (43, 4), (48, 5), (47, 5), (50, 6), (49, 7), (52, 7), (55, 7), (51, 8), (59, 8),
    (53, 8), (20, None), (90, None)])
def test_drum_classes(pitch, klass):
    assert drum_class(pitch) == klass


def test_every_listed_key_maps_to_its_class_and_back_to_the_canonical_key():
    for index, pitches in enumerate(DRUM_TYPE_PITCHES):
        for pitch in pitches:
            assert drum_bitmask([pitch]) == 1 << index
            assert bitmask_pitches(1 << index) == [pitches[0]]
    assert bitmask_pitches(0b100000101) == [36, 42, 51]


def test_drum_track_bitmasks_velocities_and_round_trip():
    score = drums([(36, 0.0), (42, 0.0), (38, 0.25), (40, 0.25), (20, 0.5), (51, 0.75)])
    score = make_score([n if n.pitch != 40 else Note(40, 120, n.start_s, n.end_s, 0, 9, True)
                        for n in score.notes], tempos=[Tempo(0.0, 120.0)])
    (track,) = score_to_drum_tracks(score, min_bars=0)
    assert track.events.tolist() == [0b101, 0, 0b10, 0, 0, 0, 1 << 8]  # key 20: a hit, no class
    assert track.velocities[2, 1] == 120 and track.velocities[0, 0] == 100
    notes = drums_to_notes(track.events, step_s=STEP_S, velocities=track.velocities)
    assert [(n.pitch, n.start_s, n.velocity, n.is_drum) for n in notes] == [
        (36, 0.0, 100, True), (42, 0.0, 100, True), (38, 0.25, 120, True), (51, 0.75, 100, True)]
    (again,) = score_to_drum_tracks(make_score(notes, tempos=[Tempo(0.0, 120.0)]), min_bars=0)
    assert again.events.tolist() == [0b101, 0, 0b10, 0, 0, 0, 1 << 8]


def test_drum_tracks_split_at_a_bar_without_hits():
    hits = [(36, 0.0), (36, 0.125)] + [(38, 0.125 * s) for s in (17, 40)]
    first, second = score_to_drum_tracks(drums(hits), min_bars=0)
    assert len(first.events) == 18 and second.start_step == 32
    assert second.events.tolist() == [0] * 8 + [0b10]
    assert primer_drum_track(drums(hits)).events.nonzero()[0].tolist() == [0, 1, 17, 40]


# --- chords ----------------------------------------------------------------------------


@pytest.mark.parametrize("symbol, root, pcs, bass", [
    ("C", 0, {0, 4, 7}, 0), ("Am", 9, {9, 0, 4}, 9), ("G7", 7, {7, 11, 2, 5}, 7),
    ("Bb", 10, {10, 2, 5}, 10), ("B-m", 10, {10, 1, 5}, 10), ("F#m7", 6, {6, 9, 1, 4}, 6),
    ("Cmaj7", 0, {0, 4, 7, 11}, 0), ("CM7", 0, {0, 4, 7, 11}, 0), ("Cm7b5", 0, {0, 3, 6, 10}, 0),
    ("Cdim", 0, {0, 3, 6}, 0), ("Cdim7", 0, {0, 3, 6, 9}, 0), ("Caug", 0, {0, 4, 8}, 0),
    ("C+", 0, {0, 4, 8}, 0), ("Csus2", 0, {0, 2, 7}, 0), ("Csus4", 0, {0, 5, 7}, 0),
    ("C6", 0, {0, 4, 7, 9}, 0), ("C9", 0, {0, 4, 7, 10, 2}, 0), ("C11", 0, {0, 4, 7, 10, 2, 5}, 0),
    ("C13", 0, {0, 4, 7, 10, 2, 5, 9}, 0), ("Cadd9", 0, {0, 4, 7, 2}, 0),
    ("C7b9", 0, {0, 4, 7, 10, 1}, 0), ("C7(#9)", 0, {0, 4, 7, 10, 3}, 0),
    ("C7b5", 0, {0, 4, 6, 10}, 0), ("Cm(add9)", 0, {0, 3, 7, 2}, 0),
    ("Cd", 0, {0, 3, 6}, 0), ("Ca", 0, {0, 4, 8}, 0), ("C/e", 0, {0, 4, 7}, 4),
    ("G7/b", 7, {7, 11, 2, 5}, 11), ("D/f+", 2, {2, 6, 9}, 6), ("C/Bb", 0, {0, 4, 7}, 10),
    ("Ebmaj7/G", 3, {3, 7, 10, 2}, 7), ("C6/9", 0, {0, 4, 7, 9, 2}, 0)])
def test_parse_chord(symbol, root, pcs, bass):
    assert parse_chord(symbol) == (root, frozenset(pcs), bass)


@pytest.mark.parametrize("symbol", ["N.C.", "NC", "", " n.c. "])
def test_no_chord(symbol):
    assert parse_chord(symbol) is None and chord_row(symbol) == NO_CHORD_ROW


@pytest.mark.parametrize("symbol", ["H7", "Cxyz", "C/H", "7"])
def test_unreadable_chords_raise(symbol):
    with pytest.raises(ChordSymbolError):
        parse_chord(symbol)


def test_names_quality_and_transposition():
    assert chord_name(*chord_row("Am7/G")) == "Am7/G" and chord_name(*NO_CHORD_ROW) == "N.C."
    assert chord_quality(*chord_row("G7")[:2]) == "major"
    assert chord_quality(*chord_row("Bm7b5")[:2]) == "diminished"
    assert chord_quality(*chord_row("Csus4")[:2]) == "other"
    rows = np.array([chord_row("B7/D#"), NO_CHORD_ROW])
    assert transpose_chords(rows, 2).tolist() == [list(chord_row("C#7/F")), list(NO_CHORD_ROW)]


def test_chords_per_step_from_symbols():
    score = make_score([], chords=[ChordSymbol(0.25, "C"), ChordSymbol(0.5, "G7")],
                       tempos=[Tempo(0.0, 120.0)])
    rows = score_chords_per_step(score, 6)
    assert [chord_name(*r) for r in rows] == ["N.C.", "N.C.", "C", "C", "G7", "G7"]


def block_chord_tune():
    """A tune (instrument 0) over C, Am, (silence), G7 block chords (instrument 1)."""
    tune = melody(" ".join(["72 74 76 77"] * 8)).notes
    chords = (chord_notes([48, 52, 55], 0.0, 1.0, instrument=1)
              + chord_notes([45, 48, 52], 1.0, 2.0, instrument=1)
              + chord_notes([43, 47, 50, 53], 3.0, 4.0, instrument=1))
    return make_score(list(tune) + chords, tempos=[Tempo(0.0, 120.0)])


def test_infer_chords_from_block_chords():
    rows = infer_chords(block_chord_tune(), 4)
    assert [chord_name(*r) for r in rows[::8]] == ["C", "Am", "N.C.", "G7"]
    assert len(rows) == 32


def test_lead_sheets_pair_the_melody_with_its_chords():
    (sheet,) = score_to_lead_sheets(block_chord_tune(), min_bars=1)
    assert sheet.melody.events[:4].tolist() == [72, 74, 76, 77]
    assert sheet.chords.shape == (32, 3)
    assert [chord_name(*r) for r in sheet.chords[::8]] == ["C", "Am", "N.C.", "G7"]
