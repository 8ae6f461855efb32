import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from builders import drums, melody, pedal
from mtools.errors import InputFormatError
from mtools.io.midi import midi_to_score, score_to_midi
from mtools.score import (ChordSymbol, KeySignature, Note, PitchBend, Tempo,
                          TimeSignature, make_score)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TESTDATA = SHARED / "magenta_testdata"


def note_key(n):
    return (n.pitch, n.velocity, round(n.start_s, 9), round(n.end_s, 9), n.program, n.is_drum)


def smf(tracks: list[bytes], division=480, fmt=1) -> bytes:
    body = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division)
    for t in tracks:
        body += b"MTrk" + struct.pack(">I", len(t)) + t
    return body


END = b"\x00\xff\x2f\x00"


def test_running_status_and_note_on_zero_velocity_as_release():
    # note on 60, then (running status) 60 vel 0 at tick 480, 62 on, 62 off.
    track = b"\x00\x90\x3c\x64" + b"\x83\x60\x3c\x00" + b"\x00\x3e\x50" + b"\x83\x60\x3e\x00" + END
    score = midi_to_score(smf([track]))
    assert [(n.pitch, n.velocity, n.start_s, n.end_s) for n in score.notes] == [
        (60, 100, 0.0, 0.5), (62, 80, 0.5, 1.0)]


def test_type0_channels_become_instruments_with_programs_and_drums():
    track = (b"\x00\xc1\x28" + b"\x00\x91\x45\x60" + b"\x00\x99\x24\x70"
             + b"\x60\x81\x45\x00" + b"\x00\x89\x24\x00" + END)
    score = midi_to_score(smf([track], fmt=0))
    by_pitch = {n.pitch: n for n in score.notes}
    assert by_pitch[69].program == 40 and not by_pitch[69].is_drum
    assert by_pitch[36].is_drum
    assert by_pitch[69].instrument != by_pitch[36].instrument


def test_tempo_changes_place_notes_in_seconds():
    conductor = b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x83\x60\xff\x51\x03\x0f\x42\x40" + END
    notes = b"\x00\x90\x3c\x64" + b"\x87\x40\x80\x3c\x00" + END  # 0 .. 960 ticks
    score = midi_to_score(smf([conductor, notes]))
    # 480 ticks at 120 qpm (0.5 s) then 480 ticks at 60 qpm (1 s).
    assert score.notes[0].end_s == pytest.approx(1.5)
    assert [t.qpm for t in score.tempos] == pytest.approx([120.0, 60.0])


def test_smpte_division_uses_frames_not_tempo():
    track = b"\x00\x90\x3c\x64" + b"\x81\x48\x80\x3c\x00" + END  # 200 ticks
    score = midi_to_score(smf([track], division=(256 - 25) << 8 | 40))  # 25 fps x 40
    assert score.notes[0].end_s == pytest.approx(0.2)


@pytest.mark.parametrize("data, message", [
    (b"", "not a MIDI file"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0" + b"MTrk\x00\x00\x00\x04" + END, "2 tracks"),
    (smf([b"\x00\x90\x3c\x64\x83"]), "truncated"),
    (smf([b"\x00\x90\x3c"]), "truncated"),
    (smf([b"\x00\x3c\x64" + END]), "no status byte"),
    (smf([b"\x00\xff\x51\x03\x00\x00\x00" + b"\x00\x90\x3c\x64\x60\x80\x3c\x00" + END]),
     "track 0 sets a tempo of 0 microseconds per quarter note"),
])
def test_bad_midi_raises_a_readable_error(data, message):
    with pytest.raises(InputFormatError, match=message):
        midi_to_score(data)


def test_cut_short_file_is_reported():
    data = score_to_midi(melody("60 62 64 65"))
    with pytest.raises(InputFormatError, match="truncated"):
        midi_to_score(data[:-7])


def test_round_trip_keeps_everything_the_score_holds():
    score = make_score(
        [Note(60, 90, 0.0, 0.5, 0, 0), Note(64, 70, 0.25, 1.0, 40, 1),
         Note(36, 100, 0.0, 0.1, 0, 2, True), Note(60, 91, 0.5, 0.5, 0, 0)],
        tempos=[Tempo(0.0, 100.0), Tempo(0.6, 150.0)],  # whole microseconds per quarter
        time_signatures=[TimeSignature(0.0, 3, 4), TimeSignature(0.6, 6, 8)],
        key_signatures=[KeySignature(0.0, 9, 1), KeySignature(0.6, 10, 0)],
        chords=[ChordSymbol(0.0, "Am"), ChordSymbol(0.6, "Bb7/D")],
        control_changes=pedal(0, 0.1, 0.9),
        pitch_bends=[PitchBend(0.3, -2000, 40, 1)], ticks_per_quarter=480, title="t")
    score = replace(score, provenance={"model": "coconet", "seed": 1234567890, "t": 0.5})
    back = midi_to_score(score_to_midi(score))
    assert sorted(map(note_key, back.notes)) == sorted(map(note_key, score.notes))
    assert [(round(t.time_s, 9), round(t.qpm, 6)) for t in back.tempos] == [(0.0, 100.0), (0.6, 150.0)]
    assert [(k.key, k.mode) for k in back.key_signatures] == [(9, 1), (10, 0)]
    assert [(t.numerator, t.denominator) for t in back.time_signatures] == [(3, 4), (6, 8)]
    assert [c.figure for c in back.chords] == ["Am", "Bb7/D"]
    assert [(c.number, c.value, round(c.time_s, 9)) for c in back.control_changes] == [
        (64, 127, 0.1), (64, 0, 0.9)]
    assert [(b.bend, b.program) for b in back.pitch_bends] == [(-2000, 40)]
    assert back.title == "t" and back.ticks_per_quarter == 480
    assert back.provenance == {"model": "coconet", "seed": 1234567890, "t": 0.5}


@pytest.mark.parametrize("text", [b"mtools: not json", b"mtools:[]", b"mtools:" + b"[" * 100_000])
def test_text_that_only_looks_like_provenance_is_ignored(text):
    plain = score_to_midi(make_score([Note(60, 90, 0.0, 0.5)]))
    size = len(text)  # as a MIDI variable-length quantity
    length_bytes = bytes([size & 0x7F])
    while size > 0x7F:
        size >>= 7
        length_bytes = bytes([0x80 | (size & 0x7F)]) + length_bytes
    event = b"\x00\xff\x01" + length_bytes + text
    track = plain.index(b"MTrk")  # the first track, its length then its events
    length = struct.unpack(">I", plain[track + 4:track + 8])[0] + len(event)
    edited = plain[:track + 4] + struct.pack(">I", length) + event + plain[track + 8:]
    back = midi_to_score(edited)
    assert back.provenance == {} and [n.pitch for n in back.notes] == [60]


notes_strategy = st.lists(st.tuples(
    st.integers(0, 127), st.integers(1, 127), st.integers(0, 5000), st.integers(0, 600),
    st.integers(0, 127), st.integers(0, 3), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(notes_strategy, st.integers(1, 960),
       st.lists(st.tuples(st.integers(0, 5000), st.integers(20, 300)), max_size=4))
def test_midi_round_trip_is_exact_to_the_tick(raw, tpq, tempo_points):
    """Notes placed on ticks under a random tempo map come back on the same
    ticks: pitch, velocity, program, drum flag and times all equal."""
    tempo_track = b""
    last = 0
    for tick, qpm in sorted(set(tempo_points)):
        us = round(60_000_000 / qpm)
        delta = tick - last
        tempo_track += _varlen(delta) + b"\xff\x51\x03" + us.to_bytes(3, "big")
        last = tick
    note_track = _note_track(raw)
    original = midi_to_score(smf([tempo_track + END, note_track], division=tpq))
    again = midi_to_score(score_to_midi(original))
    assert sorted(map(note_key, again.notes)) == sorted(map(note_key, original.notes))
    assert [round(t.qpm, 6) for t in again.tempos] == [round(t.qpm, 6) for t in original.tempos]


def _varlen(value):
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _note_track(raw) -> bytes:
    events = []
    for pitch, vel, start, length, program, chan, drum in raw:
        channel = 9 if drum else chan
        events.append((start, 1, bytes([0xC0 | channel, program])))
        events.append((start, 2, bytes([0x90 | channel, pitch, vel])))
        events.append((start + length + 1, 0, bytes([0x80 | channel, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    body, last = b"", 0
    for tick, _, payload in events:
        body += _varlen(tick - last) + payload
        last = tick
    return body + END


def test_drums_are_written_on_channel_ten():
    data = score_to_midi(drums([(36, 0.0), (42, 0.5)]))
    assert b"\x99\x24" in data and b"\x99\x2a" in data


def test_zero_length_note_is_released_after_its_onset():
    score = make_score([Note(60, 80, 1.0, 1.0)])
    back = midi_to_score(score_to_midi(score))
    assert len(back.notes) == 0 or back.notes[0].end_s >= back.notes[0].start_s
    assert b"\x90\x3c" in score_to_midi(score)


def test_empty_score_is_a_valid_file():
    back = midi_to_score(score_to_midi(make_score([])))
    assert back.notes == ()


@pytest.mark.skipif(not TESTDATA.is_dir(), reason="../shared/data is not present")
@pytest.mark.parametrize("name", ["example.mid", "example_complex.mid", "example_event_order.mid",
                                  "example_is_drum.mid", "melody.mid", "english1.mid",
                                  "english3.mid"])
def test_agrees_with_an_independent_reader_on_magenta_fixtures(name):
    from midi_reference import reference_notes
    path = TESTDATA / name
    ours = sorted(note_key(n) for n in midi_to_score(path.read_bytes()).notes)
    ref = sorted((p, v, round(s, 9), round(e, 9), prog, d)
                 for p, v, s, e, prog, d in reference_notes(path))
    assert ours == ref


@pytest.mark.parametrize("start, end", [(float("nan"), 1.0), (0.0, float("inf")), (0.0, 1e12)])
def test_times_no_midi_file_can_hold_are_an_error_not_a_hang(start, end):
    # a NaN once became a negative tick count and looped in the length encoding
    with pytest.raises(InputFormatError):
        score_to_midi(make_score([Note(60, 80, start, end)]))


def test_a_time_past_int64_ticks_is_named_not_wrapped_round():
    with pytest.raises(InputFormatError, match=r"a time of 1e\+308 s is more than"):
        score_to_midi(make_score([Note(60, 80, 0.0, 1e308)]))


def test_a_bad_midi_file_is_named_in_its_error():
    from mtools.io.formats import read_scores

    with pytest.raises(InputFormatError, match=r"^song\.mid: truncated"):
        read_scores(score_to_midi(melody("60 62 64 65"))[:-7], "midi", "song.mid")


def _programs_per_channel(programs: list[int]) -> dict[int, list[int]]:
    """Write one instrument per program given; channel -> the programs its
    tracks set, as mido reads the file."""
    import io

    import mido

    notes = [Note(60 + i % 40, 80, i * 0.5, i * 0.5 + 0.4, instrument=i, program=program)
             for i, program in enumerate(programs)]
    written = mido.MidiFile(file=io.BytesIO(score_to_midi(make_score(notes))))
    on = {}
    for track in written.tracks:
        for message in track:
            if message.type == "program_change":
                on.setdefault(message.channel, []).append(message.program)
    back = midi_to_score(score_to_midi(make_score(notes)))
    assert sorted(n.program for n in back.notes) == sorted(programs)
    return on


def test_more_instruments_than_channels_share_them_by_program():
    on = _programs_per_channel([0, 40, 41, 73] * 5)  # twenty instruments, four programs
    assert all(len(set(programs)) == 1 for programs in on.values()), on
    assert len(on) == 15 and 9 not in on  # every channel but the drums' in use
    assert sorted(len(programs) for programs in on.values()) == [1] * 10 + [2] * 5
    on = _programs_per_channel([0] * 15 + [40])  # fifteen pianos and a violin
    assert [programs for programs in on.values() if 40 in programs] == [[40]]
    assert len(on) == 15
    on = _programs_per_channel(list(range(20)))  # more programs than channels: shared
    assert len(on) == 15 and sum(len(p) for p in on.values()) == 20
