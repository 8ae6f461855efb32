"""Training corpora: the split, the cache, and the shared data sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from builders import chord_notes, drums, melody
from mtools.errors import InputMissingError, UsageError
from mtools.io.midi import score_to_midi
from mtools.models.events import MelodyLine
from mtools.score import make_score
from mtools.training import corpora

TUNE = " ".join(["60 62 64 65 67 69 71 72"] * 16)  # 8 bars of 4/4


def shared_data() -> Path:
    try:
        return corpora.data_root()
    except InputMissingError:
        pytest.skip("../shared/data is absent (set MTOOLS_DATA to run this test)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTOOLS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_split_is_deterministic_disjoint_and_about_ten_percent():
    ids = [f"piece-{i}" for i in range(5000)]
    valid, train = corpora.split(ids, "valid"), corpora.split(ids, "train")
    assert valid == corpora.split(list(ids), "valid")
    assert not set(valid) & set(train) and len(valid) + len(train) == len(ids)
    assert 400 < len(valid) < 600
    assert corpora.piece_part("nottingham/jigs107") == corpora.piece_part("nottingham/jigs107")


def test_split_goes_by_piece_and_honours_a_fixed_part():
    lines = [MelodyLine(np.zeros(4, np.int16), piece=f"p{i % 50}") for i in range(200)]
    valid = {line.piece for line in corpora.split(lines, "valid")}
    assert not valid & {line.piece for line in corpora.split(lines, "train")}
    fixed = MelodyLine(np.zeros(4, np.int16), piece="p1", part="test")
    assert corpora.split([fixed], "test") == [fixed] and corpora.split([fixed], "train") == []
    with pytest.raises(UsageError):
        corpora.split(lines, "validation")


def write_folder(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "a.mid").write_bytes(score_to_midi(melody(TUNE)))
    (folder / "sub" / "b.mid").write_bytes(score_to_midi(make_score(
        list(melody(TUNE).notes) + chord_notes([48, 52, 55], 0.0, 16.0, instrument=1))))
    (folder / "c.mid").write_bytes(score_to_midi(drums([(36, 0.25 * i) for i in range(64)])))
    (folder / "notes.txt").write_text("not a score")


def test_a_folder_is_parsed_once_then_read_from_the_cache(tmp_path, cache, monkeypatch):
    write_folder(tmp_path / "songs")
    source = str(tmp_path / "songs")
    lines = corpora.load_melodies(source, workers=1)
    # b.mid's chord track holds one pitch class: too few for a melody.
    assert sorted(line.piece for line in lines) == ["a.mid", "sub/b.mid"]
    assert all(line.part == corpora.piece_part(line.piece) for line in lines)
    npz, manifest = corpora.cache_paths("melodies", source)
    assert npz.parent == cache / "data"
    stats = json.loads(manifest.read_text())["stats"]
    assert stats["items"] == 2 and stats["pieces"] == 2 and stats["time_signatures"] == {"4/4": 2}
    monkeypatch.setattr(corpora, "_parse_all", lambda *a: pytest.fail("cache not used"))
    again = corpora.load_melodies(source)
    assert [a.events.tolist() for a in again] == [b.events.tolist() for b in lines]
    assert [(a.piece, a.part, a.qpm) for a in again] == [(b.piece, b.part, b.qpm) for b in lines]


def test_drums_and_lead_sheets_survive_the_cache(tmp_path, cache):
    write_folder(tmp_path / "songs")
    source = str(tmp_path / "songs")
    (track,) = corpora.load_drum_tracks(source, workers=1)
    (cached,) = corpora.load_drum_tracks(source)
    assert np.array_equal(track.velocities, cached.velocities) and cached.piece == "c.mid"
    (sheet,) = corpora.load_lead_sheets(source, workers=1)
    (cached,) = corpora.load_lead_sheets(source)
    assert np.array_equal(sheet.chords, cached.chords) and cached.piece == "sub/b.mid"
    assert set(map(tuple, cached.chords.tolist())) == {(0, 0b10010001, 0)}


def test_a_changed_folder_is_parsed_again(tmp_path, cache):
    write_folder(tmp_path / "songs")
    assert len(corpora.load_melodies(str(tmp_path / "songs"), workers=1)) == 2
    os.remove(tmp_path / "songs" / "a.mid")
    assert len(corpora.load_melodies(str(tmp_path / "songs"), workers=1)) == 1


def test_a_cache_stands_in_for_sources_missing_from_this_machine(tmp_path, cache):
    import shutil

    write_folder(tmp_path / "songs")
    source = str(tmp_path / "songs")
    parsed = corpora.load_melodies(source, workers=1)
    shutil.rmtree(tmp_path / "songs")
    cached = corpora.load_melodies(source)
    assert [a.events.tolist() for a in cached] == [b.events.tolist() for b in parsed]
    with pytest.raises(InputMissingError):
        corpora.load_melodies(source, refresh=True)
    with pytest.raises(InputMissingError):
        corpora.load_drum_tracks(source)  # no cache of this kind


def test_missing_sources_are_clear_errors(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("MTOOLS_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(InputMissingError, match="MTOOLS_DATA"):
        corpora.load_melodies("nottingham")
    with pytest.raises(InputMissingError):
        corpora.load_melodies(str(tmp_path / "absent"))
    with pytest.raises(UsageError):
        corpora.load_melodies("music21:bach")


def test_folk_tunes_join_ties_of_one_pitch_only():
    music21 = pytest.importorskip("music21")
    abc = "X:1\nT:t\nM:4/4\nL:1/4\nK:C\nC2- C2 | D E F G- | A4 |]\n"
    score = corpora._tune_to_score(music21.converter.parse(abc, format="abc"), music21)
    assert [(n.pitch, n.start_s, n.end_s) for n in score.notes] == [
        (60, 0.0, 2.0), (62, 2.0, 2.5), (64, 2.5, 3.0), (65, 3.0, 3.5), (67, 3.5, 4.0),
        (69, 4.0, 6.0)]


def bar_pitches(abc: str, tmp_path: Path) -> list[int]:
    """The first pitch of each bar of a one-tune ABC book read as the
    folk corpus reads it (repeats expanded), 4/4 in quarter notes."""
    path = tmp_path / "book.abc"
    path.write_text("X:1\nT:t\nM:4/4\nL:1/4\nK:C\n" + abc)
    ((name, score),) = corpora._folk_pieces(path, "music21/oneills1850/book.abc")
    assert name == "music21/oneills1850/book.abc#1"
    return [n.pitch for n in score.notes if round(n.start_s / 2.0, 6).is_integer()]


def test_folk_repeats_without_a_start_mark_repeat_their_own_section(tmp_path):
    pytest.importorskip("music21")
    # ABC: ':|' goes back to the last ':|' or '||', not to the tune's start
    # (music21 alone repeats each from the start: 28 bars, A A B A A B C ...)
    assert bar_pitches("C D E F | D E F G :|\nE F G A | F G A B :|\nG A B c | A B c d :|\n",
                       tmp_path) == [60, 62, 60, 62, 64, 65, 64, 65, 67, 69, 67, 69]
    assert bar_pitches("|: C D E F | D E F G :|\nE F G A | F G A B :|\n",
                       tmp_path) == [60, 62, 60, 62, 64, 65, 64, 65]
    # first and second endings; the next section starts after the second
    assert bar_pitches("C D E F |1 D E F G :|2 B c d e |\nE F G A | F G A B :|\n",
                       tmp_path) == [60, 62, 60, 71, 64, 65, 64, 65]


def test_nottingham_files_hold_a_melody_over_block_chords():
    folder = shared_data() / "nottingham" / "MIDI"
    job = corpora.Job(str(folder / "jigs107.mid"), "nottingham/jigs107", melody="top")
    (line,), skipped, unreadable = corpora._parse_job("melodies", job)
    assert not skipped and not unreadable and line.steps_per_bar == 12 and line.events.max() < 90
    (sheet,), _, _ = corpora._parse_job("lead_sheets", job)
    assert np.mean(sheet.chords[:, 0] >= 0) > 0.9


def test_groove_keeps_its_own_split():
    jobs = corpora._groove_jobs(shared_data() / "groove_midi")
    assert {job.part for job in jobs} <= {"train", "valid", "test"}
    assert sum(job.part == "valid" for job in jobs) > 0
    assert len({job.piece for job in jobs}) == len(jobs)
