import json
import os
from pathlib import Path

import pytest

from builders import melody
from clirunner import run
from mtools.io.jsonl import score_to_jsonl
from mtools.io.midi import midi_to_score, score_to_midi
from mtools.score import Note, Tempo, make_score

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def one_line(stderr: str) -> bool:
    return len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


@pytest.fixture
def song(tmp_path) -> Path:
    score = make_score([Note(60, 90, 0.0, 0.5, 40, 0), Note(64, 70, 0.5, 1.25, 40, 0),
                        Note(36, 110, 0.0, 0.1, 0, 1, True)],
                       tempos=[Tempo(0.0, 96.0), Tempo(1.0, 150.0)], ticks_per_quarter=384)
    path = tmp_path / "song.mid"
    path.write_bytes(score_to_midi(score))
    return path


def notes_of(data: bytes):
    return sorted((n.pitch, n.velocity, n.start_s, n.end_s, n.program, n.is_drum)
                  for n in midi_to_score(data).notes)


def test_midi_to_jsonl_to_midi_keeps_every_note_to_the_tick(song, tmp_path):
    as_jsonl = run(["convert", song, "--to", "jsonl"])
    assert as_jsonl.code == 0 and as_jsonl.stdout.startswith(b"{")
    out = tmp_path / "b.mid"
    back = run(["convert", "--to", "midi", "-o", out], stdin=as_jsonl.stdout)
    assert back.code == 0, back.stderr
    original, again = midi_to_score(song.read_bytes()), midi_to_score(out.read_bytes())
    assert notes_of(out.read_bytes()) == notes_of(song.read_bytes())
    assert again.tempos == original.tempos and again.ticks_per_quarter == 384


@pytest.mark.parametrize("stdin, message", [
    (b"garbage\n", "not a format mtools reads"),
    (b"", "input is empty"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x10\x00\x90", "truncated"),
    (b'{"notes":[]}\n{"notes":[\n', "line 2"),
    (bytes(range(0x80, 0xc0)) + b"MThd", "not a format"),  # not random: "{..." reads as JSONL
])
def test_bad_input_on_stdin_exits_65_with_one_line_and_no_output(stdin, message):
    result = run(["convert", "--to", "jsonl"], stdin=stdin)
    assert result.code == 65
    assert message in result.stderr and one_line(result.stderr)
    assert result.stdout == b""


def test_nothing_is_written_to_o_file_when_the_input_is_bad(tmp_path):
    out = tmp_path / "x.mid"
    assert run(["convert", "-o", out], stdin=b"garbage").code == 65
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_file_exits_66(tmp_path):
    result = run(["convert", tmp_path / "nope.mid", "--to", "jsonl"])
    assert result.code == 66 and "no such file" in result.stderr


def test_no_input_on_a_terminal_is_a_usage_error():
    result = run(["convert", "--to", "jsonl"], stdin_tty=True)
    assert result.code == 2 and "no input" in result.stderr


def test_binary_output_to_a_terminal_is_refused_with_a_hint(song):
    result = run(["convert", song], stdout_tty=True)
    assert result.code == 2 and "terminal" in result.stderr and "-o" in result.stderr
    assert result.stdout == b""
    assert run(["convert", song, "--to", "jsonl"], stdout_tty=True).code == 0


def test_zero_note_midi_warns_but_succeeds(tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(score_to_midi(make_score([])))
    result = run(["convert", empty, "--to", "jsonl"])
    assert result.code == 0 and "warning: no notes" in result.stderr
    assert json.loads(result.stdout)["totalTime"] == 0
    assert run(["convert", empty, "--to", "jsonl", "--quiet"]).stderr == ""


def test_melody_of_drums_alone_says_there_is_no_melody_not_no_notes(tmp_path):
    drums = tmp_path / "drums.mid"
    drums.write_bytes(score_to_midi(make_score([Note(36, 100, i * 0.5, i * 0.5 + 0.1,
                                                     is_drum=True) for i in range(4)])))
    result = run(["convert", drums, "--to", "jsonl", "--melody"])
    assert result.code == 0 and "warning: --melody found no melody" in result.stderr


def test_batch_keeps_going_past_a_bad_file_and_exits_nonzero(tmp_path, song):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mid").write_bytes(song.read_bytes())
    (folder / "b.mid").write_bytes(b"MThd broken")
    (folder / "c.jsonl").write_text(score_to_jsonl(melody("60 62")))
    result = run(["convert", folder, "-o", f"{tmp_path}/out/"])
    assert result.code == 65
    assert "b.mid" in result.stderr and "1 of 3 inputs failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mid", "c.mid"]


def test_skip_existing_resumes_a_batch(tmp_path, song):
    out = tmp_path / "out"
    assert run(["convert", song, "-o", f"{out}/"]).code == 0
    stamp = (out / "song.mid").stat().st_mtime_ns
    again = run(["convert", song, "-o", f"{out}/", "--skip-existing"])
    assert again.code == 0 and "skipped 1" in again.stderr
    assert (out / "song.mid").stat().st_mtime_ns == stamp


def test_inputs_whose_outputs_share_a_name_are_refused_before_any_work(tmp_path, song):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "tune.mid").write_bytes(song.read_bytes())
    clash = run(["convert", tmp_path / "x" / "tune.mid", tmp_path / "y" / "tune.mid",
                 "-o", f"{tmp_path}/out/"])
    assert clash.code == 2 and "would both be written to" in clash.stderr
    assert not (tmp_path / "out").exists()


def test_jobs_give_the_same_files_as_one_process(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"m{i}.jsonl").write_text(score_to_jsonl(melody(f"{60 + i} 62 64")))
    assert run(["convert", folder, "-o", f"{tmp_path}/one/"]).code == 0
    assert run(["convert", folder, "-o", f"{tmp_path}/two/", "--jobs", "2"]).code == 0
    for i in range(4):
        name = f"m{i}.mid"
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_several_scores_need_a_folder_for_midi(tmp_path):
    lines = (score_to_jsonl(melody("60")) + score_to_jsonl(melody("62"))).encode()
    refused = run(["convert", "--to", "midi"], stdin=lines)
    assert refused.code == 2 and "-o DIR/" in refused.stderr
    assert run(["convert", "--to", "midi", "-o", f"{tmp_path}/d/"], stdin=lines).code == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["stdin-1.mid", "stdin-2.mid"]


def test_many_inputs_concatenate_as_jsonl(tmp_path, song):
    result = run(["convert", song, song, "--to", "jsonl"])
    assert result.code == 0 and result.stdout.count(b"\n") == 2
    assert run(["convert", song, song, "-o", tmp_path / "x.mid"]).code == 2


def test_output_format_follows_the_extension_and_to_wins(tmp_path, song):
    assert run(["convert", song, "-o", tmp_path / "a.jsonl"]).code == 0
    assert (tmp_path / "a.jsonl").read_bytes().startswith(b"{")
    assert run(["convert", song, "-o", tmp_path / "a.txt"]).code == 2
    assert run(["convert", song, "-o", tmp_path / "a.txt", "--to", "jsonl"]).code == 0
    clash = run(["convert", song, "-o", tmp_path / "b.jsonl", "--to", "midi"])
    assert clash.code == 2 and "--to says midi" in clash.stderr
    assert not (tmp_path / "b.jsonl").exists()


def test_o_writes_through_a_link_and_into_a_fifo(tmp_path, song):
    import threading

    (tmp_path / "target.jsonl").write_text("old")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "target.jsonl")
    assert run(["convert", song, "-o", tmp_path / "link.jsonl"]).code == 0
    assert (tmp_path / "link.jsonl").is_symlink()
    assert (tmp_path / "target.jsonl").read_text().startswith("{")
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert run(["convert", song, "-o", fifo]).code == 0
    reader.join(timeout=30)
    assert fifo.is_fifo() and got and got[0].startswith(b"{")


def test_from_overrides_sniffing():
    line = b"  \n" + score_to_jsonl(melody("60 62")).encode()
    assert run(["convert", "--to", "jsonl", "--from", "jsonl"], stdin=line).code == 0
    assert run(["convert", "--to", "jsonl", "--from", "midi"], stdin=line).code == 65


def test_edits_melody_transpose_quantize(tmp_path):
    score = make_score([Note(48, 80, 0.0, 1.0), Note(64, 80, 0.02, 0.49)],
                       tempos=[Tempo(0.0, 120.0)])
    result = run(["convert", "--to", "jsonl", "--melody", "--transpose", "2", "--quantize", "4"],
                 stdin=score_to_jsonl(score).encode())
    notes = json.loads(result.stdout)["notes"]
    # proto3 JSON leaves out zero values such as startTime 0.
    assert [(n["pitch"], n.get("startTime", 0.0), n["endTime"]) for n in notes] == [(66, 0.0, 0.5)]


def test_abc_example_becomes_the_tune():
    result = run(["convert", EXAMPLES / "ode_to_joy.abc", "--to", "jsonl"])
    assert result.code == 0, result.stderr
    notes = json.loads(result.stdout)["notes"]
    # K:D, so F is F sharp: F F G A A G F E ...
    assert [n["pitch"] for n in notes[:8]] == [66, 66, 67, 69, 69, 67, 66, 64]
    assert len(notes) == 2 * 30  # the repeat is expanded


ABC_BOOK = """X:1
T:First
M:4/4
K:C
CDEF|G4|]

X:2
T:Second
M:3/4
K:G
GAB|d3|]

X:3
T:Third
K:D
ABc|d4|]
"""


def test_an_abc_book_gives_one_score_per_tune(tmp_path):
    book = tmp_path / "book.abc"
    book.write_text(ABC_BOOK)
    result = run(["convert", book, "--to", "jsonl"])
    assert result.code == 0, result.stderr
    tunes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [t["sequenceMetadata"]["title"] for t in tunes] == ["First", "Second", "Third"]
    assert [[n["pitch"] for n in t["notes"]] for t in tunes] == [
        [60, 62, 64, 65, 67], [67, 69, 71, 74], [69, 71, 73, 74]]  # K:D sharpens the C
    refused = run(["convert", book])  # three scores cannot be one .mid on stdout
    assert refused.code == 2 and "-o DIR/" in refused.stderr
    assert run(["convert", book, "-o", f"{tmp_path}/d/"]).code == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "book-1.mid", "book-2.mid", "book-3.mid"]


@pytest.mark.parametrize("abc, unit_s", [
    ("X:1\nK:C\nC D E F|]\n", 0.25),  # no L:, no M: an eighth (0.25 s at 120 qpm)
    ("K:C\nC D E F|]\n", 0.25),
    ("T:Tune\nK:C\nC D E F|]\n", 0.25),  # no X: the header runs to K:
    ("X:1\nL:1/8\nK:C\nC D E F|]\n", 0.25),
    ("L:1/4\n\nX:1\nT:a\nK:C\nC D E F|]\n", 0.5),  # a book header's unit holds
    ("M:2/4\n\nX:1\nT:a\nK:C\nC D E F|]\n", 0.125),  # as does its meter's (2/4: a 16th)
])
def test_abc_with_no_unit_length_plays_eighths_as_the_standard_says(abc, unit_s):
    result = run(["convert", "--from", "abc", "--to", "jsonl"], stdin=abc.encode())
    assert result.code == 0, result.stderr
    notes = json.loads(result.stdout)["notes"]
    assert [(n["pitch"], n["endTime"]) for n in notes] == [
        (60, unit_s), (62, 2 * unit_s), (64, 3 * unit_s), (65, 4 * unit_s)]


@pytest.mark.parametrize("stdin, message", [
    (b'{"tempos":[{"qpm":0}],"notes":[{"pitch":60,"endTime":1}]}', "qpm must be a finite"),
    (b'{"notes":[{"pitch":60,"endTime":1,"program":300}]}', "'program' out of 0..127"),
    (b'{"foo":1}\n', "none of a score's keys"),
])
def test_jsonl_a_midi_file_cannot_hold_exits_65_with_no_output(stdin, message):
    result = run(["convert", "--to", "midi"], stdin=stdin)
    assert result.code == 65, result.stderr
    assert message in result.stderr and one_line(result.stderr)
    assert result.stdout == b""


def test_a_midi_tempo_of_zero_exits_65_naming_the_file(tmp_path):
    data = bytearray(score_to_midi(melody("60 62")))
    at = data.index(b"\xff\x51\x03") + 3
    data[at:at + 3] = b"\x00\x00\x00"
    (tmp_path / "tempo0.mid").write_bytes(bytes(data))
    result = run(["convert", tmp_path / "tempo0.mid", "--to", "jsonl"])
    assert result.code == 65 and one_line(result.stderr)
    assert "tempo0.mid: bad MIDI: track 0 sets a tempo of 0" in result.stderr


def test_usage_errors_exit_2():
    assert run(["convert", "--no-such-option"]).code == 2
    assert run(["no-such-command"]).code == 2


def test_debug_shows_the_traceback():
    result = run(["convert", "--to", "jsonl", "--debug"], stdin=b"garbage")
    assert result.code != 0


MUSICXML = """<?xml version="1.0" encoding="{encoding}"?>
<score-partwise version="3.1"><part-list><score-part id="P1"><part-name>M</part-name>
</score-part></part-list><part id="P1"><measure number="1"><attributes><divisions>1</divisions>
<time><beats>4</beats><beat-type>4</beat-type></time></attributes>
<note><pitch><step>C</step><octave>4</octave></pitch><duration>2</duration></note>
<note><pitch><step>E</step><octave>4</octave></pitch><duration>2</duration></note>
</measure></part></score-partwise>
"""


@pytest.mark.parametrize("kind", ["utf-8", "utf-16", "mxl"])
def test_musicxml_in_plain_utf16_and_compressed(tmp_path, kind):
    import zipfile

    if kind == "mxl":
        path = tmp_path / "tune.mxl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("META-INF/container.xml",
                             '<container><rootfiles><rootfile full-path="score/tune.xml"/>'
                             "</rootfiles></container>")
            archive.writestr("score/tune.xml", MUSICXML.format(encoding="UTF-16").encode("utf-16"))
    else:
        path = tmp_path / "tune.musicxml"
        path.write_bytes(MUSICXML.format(encoding=kind.upper()).encode(kind))
    out = run(["convert", str(path), "--to", "jsonl"])
    assert out.code == 0, out.stderr
    notes = json.loads(out.stdout)["notes"]
    assert [n["pitch"] for n in notes] == [60, 64]
    assert notes[1]["startTime"] == pytest.approx(1.0)  # a half note at 120 qpm


def test_an_empty_input_path_is_a_usage_error_not_the_current_folder():
    out = run(["convert", "", "--to", "jsonl"])
    assert out.code == 2 and "input path is empty" in out.stderr and out.stdout == b""


def test_a_transpose_past_the_midi_range_is_a_data_error_naming_the_input(song):
    out = run(["convert", song, "--transpose", "100", "--to", "jsonl"])
    assert out.code == 65 and one_line(out.stderr) and "outside 0..127" in out.stderr
    assert "internal error" not in out.stderr


@pytest.mark.parametrize("args, words", [
    (["convert", "--to", "xml"], "'--to'"), (["convert", "--nosuch"], "--nosuch"),
    (["nosuch"], "nosuch"), (["eval"], "DATA"),
])
def test_the_option_parsers_errors_are_one_line_with_exit_2(args, words):
    out = run(args)
    assert out.code == 2 and one_line(out.stderr) and words in out.stderr, out.stderr
    assert out.stderr.startswith("mtools: ") and "--help" in out.stderr


def test_binary_output_to_a_terminal_named_by_o_is_refused(song):
    import pty

    controller, terminal = pty.openpty()
    try:
        out = run(["convert", song, "-o", os.ttyname(terminal), "--to", "midi"])
        assert out.code == 2 and "terminal" in out.stderr
        assert run(["convert", song, "-o", os.ttyname(terminal), "--to", "jsonl"]).code == 0
    finally:
        os.close(controller)
        os.close(terminal)


def test_a_transposition_no_midi_note_survives_is_a_usage_error(tmp_path):
    (tmp_path / "a.mid").write_bytes(score_to_midi(make_score([Note(60, 80, 0.0, 1.0)])))
    assert run(["convert", tmp_path / "a.mid", "--to", "jsonl", "--transpose", "200"]).code == 2
    assert run(["convert", tmp_path / "a.mid", "--to", "jsonl", "--transpose", "67"]).code == 0
