"""The batch runner (`commands/_batch.py`) with --jobs: how many workers,
stdin among the inputs, stopping early, Ctrl-C."""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path

import pytest

from builders import melody
from clirunner import run
from mtools.commands import _batch
from mtools.commands._batch import JobResult
from mtools.errors import UsageError
from mtools.io.midi import score_to_midi
from mtools.io.streams import Input


def slow_job(source: Input) -> JobResult:
    """Marks that it started (a file beside the input), then takes a while."""
    Path(f"{source.path}.started").touch()
    time.sleep(0.2)
    return JobResult([b"x"])


def inputs_in(folder: Path, count: int) -> list[Input]:
    paths = [folder / f"{index}.mid" for index in range(count)]
    for path in paths:
        path.touch()
    return [Input(path.name, path, Path(path.name)) for path in paths]


def test_jobs_start_no_more_workers_than_inputs(tmp_path, monkeypatch):
    sizes = []

    class Recording(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, max_workers=None, **kwargs):
            sizes.append(max_workers)
            super().__init__(max_workers, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Recording)
    results = list(_batch._results(inputs_in(tmp_path, 2), slow_job, 50))
    assert sizes == [2] and [r.outputs for _, r in results] == [[b"x"], [b"x"]]


def test_stopping_early_drops_the_work_not_started(tmp_path):
    # The reader of stdout left after the first result (or Ctrl-C): the
    # other 39 inputs must not all be worked through and thrown away.
    results = _batch._results(inputs_in(tmp_path, 40), slow_job, 2)
    next(results)
    results.close()
    time.sleep(0.5)  # a worker that was not ended would go on starting inputs
    assert len(list(tmp_path.glob("*.started"))) <= 8


def test_an_output_that_cannot_be_written_stops_the_batch_and_says_where(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.mid").write_bytes(score_to_midi(melody("60 62 64")))
    (tmp_path / "0.mid").write_bytes(b"not midi at all")  # fails first, with 65
    (tmp_path / "out" / "a.mid").mkdir(parents=True)  # a folder where a's output goes
    out = run(["convert", *(tmp_path / f"{n}.mid" for n in "0abc"), "-o", f"{tmp_path}/out/"])
    assert out.code == 65 and out.stderr.splitlines()[-3:] == [  # the first failure's code
        f"mtools: {tmp_path}/out/a.mid: cannot write: is a directory",
        "mtools: stopped at input 2 of 4: the inputs after it were not written",
        "mtools: 2 of 4 inputs failed"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mid"]


def test_stdin_among_inputs_with_jobs_is_read_once_here(tmp_path):
    tune = score_to_midi(melody("60 62 64"))
    (tmp_path / "b.mid").write_bytes(score_to_midi(melody("67 65")))
    done = run(["convert", "-", tmp_path / "b.mid", "--to", "jsonl", "-j", "2"], stdin=tune)
    assert done.code == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2 and lines[0].count('"pitch"') == 3 and lines[1].count('"pitch"') == 2


def test_ctrl_c_stops_with_130_and_says_so(tmp_path, monkeypatch):
    from mtools.commands import convert

    def interrupted(options, source):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "convert_input", interrupted)
    (tmp_path / "a.mid").write_bytes(score_to_midi(melody("60")))
    done = run(["convert", tmp_path / "a.mid", "--to", "jsonl"])
    assert done.code == 130 and done.stderr == "mtools: interrupted\n" and done.stdout == b""


@pytest.mark.parametrize("command", [["harmonize", "--melody", "60 62"],
                                     ["continue", "--model", "melody_rnn", "--bars", "1"]])
def test_a_negative_seed_is_a_usage_error(command):
    done = run([*command, "--seed", "-1", "--to", "jsonl"])
    assert done.code == 2 and "--seed" in done.stderr and len(done.stderr.splitlines()) == 1


def test_bad_melody_text_is_a_usage_error_naming_the_option():
    done = run(["harmonize", "--melody", "60 abc"])
    assert done.code == 2 and done.stderr.startswith("mtools: --melody: token 2 is 'abc'"), \
        done.stderr


def test_takes_that_cannot_share_one_file_are_refused_before_any_work(monkeypatch):
    from mtools.models import harmonization

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(harmonization, "harmonize_score", must_not_run)
    done = run(["harmonize", "--melody", "60 62", "-n", "2", "-o", "x.mid"])
    assert done.code == 2 and "2 outputs (-n)" in done.stderr and len(done.stderr.splitlines()) == 1


def test_eval_refuses_stdin_and_options_for_other_models(tmp_path):
    assert run(["eval", "-"]).code == 2
    done = run(["eval", "--model", "melody_rnn", "--samples", "4", tmp_path])
    assert done.code == 2 and "--samples" in done.stderr


def test_a_soundfont_without_audio_output_is_refused(tmp_path):
    (tmp_path / "a.mid").write_bytes(score_to_midi(melody("60")))
    done = run(["convert", tmp_path / "a.mid", "--to", "jsonl", "--soundfont", "x.sf2"])
    assert done.code == 2 and "--soundfont" in done.stderr


def test_interpolate_refuses_stdin_twice_and_program_for_drums(tmp_path):
    done = run(["interpolate", "-", "-", "--to", "jsonl"], stdin=b"{}\n{}\n")
    assert done.code == 2 and "standard input" in done.stderr
    done = run(["interpolate", "--model", "music_vae:drums_2bar", "--sample", "1", "--program",
                "40", "--to", "jsonl"])
    assert done.code == 2 and "--program" in done.stderr


@pytest.mark.parametrize("command, output", [
    (["convert", "{a}", "-o", "{a}"], "file"),
    (["convert", "{a}", "-o", "{folder}"], "its own folder"),
    (["continue", "{a}", "--model", "melody_rnn", "--bars", "1", "-o", "{folder}/"], "folder/"),
    (["interpolate", "{a}", "{b}", "-o", "{b}"], "B"),
])
def test_an_output_over_an_input_is_refused_before_any_work(tmp_path, monkeypatch, command,
                                                            output):
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    for path in (a, b):
        path.write_bytes(score_to_midi(melody("60 62 64 65")))
    before = a.read_bytes(), b.read_bytes()
    done = run([part.format(a=a, b=b, folder=tmp_path) for part in command])
    assert done.code == 2 and "is an input" in done.stderr, (output, done.stderr)
    assert (a.read_bytes(), b.read_bytes()) == before


def test_a_missing_model_is_said_once_for_the_whole_batch(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.mid").write_bytes(score_to_midi(melody("60 62 64 65")))
    done = run(["harmonize", "--model", "nosuch", tmp_path / "a.mid", tmp_path / "b.mid",
                tmp_path / "c.mid", "-o", f"{tmp_path}/out/"])
    assert done.code == 69 and done.stderr.splitlines() == [
        "mtools: unknown model 'nosuch' (`mtools models` lists the models there are)"]


def test_outputs_beyond_the_planned_ones_are_checked_against_the_inputs_as_written(tmp_path):
    # an ABC book of 3 tunes gives 3 outputs where -n said 1: book-3.mid is one of the inputs
    from mtools.io.streams import OutputPlan

    (tmp_path / "book-3.mid").write_bytes(b"input")
    book = Input("book.abc", tmp_path / "book.abc", Path("book.abc"))
    inputs = [book, Input("book-3.mid", tmp_path / "book-3.mid", Path("book-3.mid"))]
    settings = _batch.BatchSettings(OutputPlan("dir", tmp_path), "mid", True, True)
    with pytest.raises(UsageError, match="book-3.mid is an input"):
        _batch._emit(book, JobResult([b"1", b"2", b"3"]), settings, [], _batch.InputGuard(inputs))
    assert (tmp_path / "book-3.mid").read_bytes() == b"input"


def test_a_hard_link_to_an_input_is_the_input(tmp_path):
    (tmp_path / "a.mid").write_bytes(b"input")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mid").hardlink_to(tmp_path / "a.mid")
    guard = _batch.InputGuard([Input("a.mid", tmp_path / "a.mid", Path("a.mid"))])
    with pytest.raises(UsageError):
        guard.check(tmp_path / "out" / "a.mid")
    guard.check(tmp_path / "out" / "b.mid")
    guard.check(None)


def test_interpolate_samples_into_a_file_with_a_terminal_on_stdin(tmp_path):
    done = run(["interpolate", "--sample", "2", "--concat", "-o", tmp_path / "s.mid"],
               stdin_tty=True)
    assert done.code == 0, done.stderr
    assert (tmp_path / "s.mid").stat().st_size > 0


def test_an_empty_output_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mid").write_bytes(score_to_midi(melody("60")))
    done = run(["convert", "a.mid", "-o", ""])
    assert done.code == 2 and "-o needs a file or folder name" in done.stderr


@pytest.mark.parametrize("command", [
    ["continue", "--model", "melody_rnn", "--bars", "1", "-n", "1001"],
    ["continue", "--model", "melody_rnn", "--bars", "1", "-n", "100", "--beam-size", "8",
     "--branch-factor", "8"],
    ["harmonize", "--melody", "60 62", "-n", "1001"],
    ["interpolate", "--sample", "1001"],
    ["interpolate", "--steps", "1001"],
])
def test_counts_that_would_not_fit_in_memory_are_usage_errors(command):
    done = run([*command, "--to", "jsonl"], stdin=b"")
    assert done.code == 2 and len(done.stderr.splitlines()) == 1, done.stderr


def test_one_unreadable_card_hides_no_other_model(tmp_path, monkeypatch):
    (tmp_path / "melody_rnn-broken.json").write_text("{")
    (tmp_path / "melody_rnn-broken.onnx").write_bytes(b"")
    monkeypatch.setenv("MTOOLS_MODEL_PATH", str(tmp_path))
    done = run(["models", "--json"])
    assert done.code == 69 and "melody_rnn-broken.json" in done.stderr
    assert '"config": "attention_rnn"' in done.stdout.decode()
    assert '"spec": "melody_rnn:attention_rnn"' in done.stdout.decode()  # what --model takes


def test_eval_names_each_file_it_could_not_read_and_exits_65(tmp_path):
    folder = tmp_path / "mix"
    folder.mkdir()
    tune = "60 _ 62 _ 64 _ 65 _ 67 _ 65 _ 64 _ 62 _ " * 8  # 8 bars: long enough to score
    (folder / "good.mid").write_bytes(score_to_midi(melody(tune)))
    (folder / "text.mid").write_bytes(b"hello world\n")
    (folder / "cut.mid").write_bytes(score_to_midi(melody("60 62 64"))[:-7])
    from mtools.training import corpora

    for _ in range(2):  # parsed, then read from the cache (its manifest names them)
        corpora._UNREADABLE.clear()
        done = run(["eval", "--model", "melody_rnn", folder, "--json"])
        lines = done.stderr.splitlines()
        assert done.code == 65 and len(lines) == 3, done.stderr
        assert lines[0].startswith(f"mtools: {folder}/cut.mid: truncated")
        assert lines[1].startswith(f"mtools: {folder}/text.mid: not a format")
        assert lines[2] == "mtools: 2 input files could not be read: the figures above leave them out"
        assert json.loads(done.stdout)["pieces"] == 1
    assert len(corpora.read_manifest("melodies", str(folder))["unreadable"]) == 2


def test_library_warnings_stay_off_stderr(monkeypatch, tmp_path):
    import warnings

    from mtools.commands import convert

    real = convert.convert_input

    def noisy(options, source):
        warnings.warn("overflow encountered", RuntimeWarning)
        return real(options, source)

    monkeypatch.setattr(convert, "convert_input", noisy)
    (tmp_path / "a.mid").write_bytes(score_to_midi(melody("60")))
    done = run(["convert", tmp_path / "a.mid", "--to", "jsonl"])
    assert done.code == 0 and done.stderr == ""


def test_a_book_bound_for_one_midi_file_is_refused_before_the_model_runs(tmp_path, monkeypatch):
    from mtools.models import harmonization

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(harmonization, "harmonize_score", must_not_run)
    book = tmp_path / "book.abc"
    book.write_text("X:1\nT:A\nM:4/4\nK:C\nCDEF|G4|]\n\nX:2\nT:B\nM:4/4\nK:G\nGABc|d4|]\n")
    done = run(["harmonize", book])
    assert done.code == 2 and "book.abc holds 2 scores, and stdout takes one .mid file" in \
        done.stderr


@pytest.mark.parametrize("takes, names, done", [
    (None, ["book.mid"], True),
    (1, ["book.mid"], True),
    (2, ["book.mid"], False),  # two takes are numbered
    (None, ["book-1.mid", "book-2.mid", "book-3.mid"], True),  # a book of three tunes
    (2, [f"book-{i:02d}.mid" for i in range(1, 11)], True),  # five tunes, two takes each
    (2, [f"book-{i:02d}.mid" for i in range(1, 10)], False),  # the tenth is missing
    (2, [f"book-{i}.mid" for i in range(1, 4)], False),  # three: no whole number of takes
    (None, ["book-01.mid", "book-02.mid"], False),  # two-digit names for a set of two: not ours
])
def test_skip_existing_recognises_every_complete_set_of_outputs(tmp_path, takes, names, done):
    # Only sets _emit can leave: it writes NAME-N first and NAME-1 last.
    from mtools.io.streams import OutputPlan

    for name in names:
        (tmp_path / name).touch()
    settings = _batch.BatchSettings(OutputPlan.from_option(f"{tmp_path}/"), "mid", True, True,
                                    skip_existing=True, takes=takes)
    source = Input("book.abc", Path("book.abc"), Path("book.abc"))
    assert _batch._done(source, settings) is done


def test_a_set_of_outputs_cut_short_is_not_skipped(tmp_path, monkeypatch):
    from mtools.io import streams
    from mtools.io.streams import OutputPlan

    settings = _batch.BatchSettings(OutputPlan.from_option(f"{tmp_path}/"), "mid", True, True,
                                    skip_existing=True)
    source = Input("book.abc", Path("book.abc"), Path("book.abc"))
    written = []

    def write_then_fail(path, data):
        if len(written) == 3:
            raise OSError("disk full")
        Path(path).write_bytes(data)
        written.append(Path(path).name)

    monkeypatch.setattr(_batch, "atomic_write", write_then_fail)
    with pytest.raises(OSError):
        _batch._emit(source, JobResult([b"x"] * 12), settings, [], _batch.InputGuard([]))
    assert written == ["book-12.mid", "book-11.mid", "book-10.mid"]
    assert not _batch._done(source, settings)
    monkeypatch.setattr(_batch, "atomic_write", streams.atomic_write)
    _batch._emit(source, JobResult([b"x"] * 12), settings, [], _batch.InputGuard([]))
    assert _batch._done(source, settings)


@pytest.mark.parametrize("progress, quiet, terminal, shown", [
    (None, False, True, True), (None, False, False, False),  # default: on a terminal
    (True, False, False, True), (False, False, True, False),  # --progress / --no-progress
    (True, True, True, False),  # --quiet wins
])
def test_progress_is_on_a_terminal_unless_told(monkeypatch, progress, quiet, terminal, shown):
    import sys

    from mtools.commands._options import shows_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert shows_progress(progress, quiet) is shown


def test_an_output_written_again_keeps_its_permissions(tmp_path):
    from mtools.io.streams import atomic_write

    target = tmp_path / "out.mid"
    atomic_write(target, b"one")
    assert target.stat().st_mode & 0o777 == 0o666 & ~streams_umask()
    target.chmod(0o600)
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600


def streams_umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current


def test_debug_shows_the_traceback_behind_a_bad_input_of_a_batch(tmp_path, monkeypatch):
    (tmp_path / "cut.mid").write_bytes(score_to_midi(melody("60 62 64"))[:-7])
    args = ["convert", tmp_path / "cut.mid", "--to", "jsonl"]
    assert "Traceback" not in run(args).stderr
    monkeypatch.setenv("MTOOLS_DEBUG", "1")
    done = run(args)
    assert done.code == 65 and "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"mtools: {tmp_path / 'cut.mid'}: truncated")
