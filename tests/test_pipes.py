"""Real processes in real pipes: what in-process tests cannot show (a closed
pipe, two mtools joined by the shell, start-up imports)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders import melody
from mtools.io.midi import midi_to_score, score_to_midi

MTOOLS = shutil.which("mtools", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(MTOOLS is None, reason="the mtools console script is not installed")


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, capture_output=True,
                          env={"PATH": env_path, "LC_ALL": "C.UTF-8"}, timeout=60)


@pytest.fixture
def long_song(tmp_path) -> Path:
    notes = " ".join(str(60 + i % 12) for i in range(4000))
    path = tmp_path / "a.mid"
    path.write_bytes(score_to_midi(melody(notes)))
    return path


def test_two_mtools_piped_keep_every_note(long_song, tmp_path):
    done = shell("mtools convert a.mid --to jsonl | mtools convert --to midi -o b.mid", tmp_path)
    assert done.returncode == 0 and done.stderr == b""
    before, after = midi_to_score(long_song.read_bytes()), midi_to_score((tmp_path / "b.mid").read_bytes())
    assert [(n.pitch, n.start_s, n.end_s) for n in after.notes] == \
           [(n.pitch, n.start_s, n.end_s) for n in before.notes]


def test_closed_pipe_ends_quietly(long_song, tmp_path):
    # head exits after 10 bytes; mtools must stop without a traceback or message.
    done = shell("mtools convert a.mid --to jsonl | head -c 10; echo \" ${PIPESTATUS[0]}\"", tmp_path)
    out = done.stdout.decode()
    assert out.startswith('{"') and len(out.split(" ")[0]) == 10
    assert done.stderr == b""
    # 240 KB of JSONL overflow the pipe: the reader leaves mid-write, and the
    # exit status says the output was cut (141, as for SIGPIPE), never 0
    assert int(out.split()[-1]) == 141


def test_jsonl_on_a_pipe_is_one_json_object_per_line(long_song, tmp_path):
    done = shell("cat a.mid | mtools convert --to jsonl | cat", tmp_path)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0 and len(lines) == 1
    assert len(json.loads(lines[0])["notes"]) == 4000


def test_bad_input_in_a_pipe_exits_65_with_one_line(tmp_path):
    done = shell("echo garbage | mtools convert --to jsonl", tmp_path)
    assert done.returncode == 65 and done.stdout == b""
    assert len(done.stderr.decode().strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_behind_stdout_is_a_one_line_write_error(long_song, tmp_path):
    for command in ("mtools convert a.mid --to jsonl", "mtools --help", "mtools models"):
        done = shell(f"{command} > /dev/full", tmp_path)
        assert done.returncode == 1, command
        assert done.stderr.decode() == "mtools: stdout: cannot write: no space left on device\n"


def test_closed_stderr_keeps_errors_out_of_stdout_and_closed_stdout_is_an_error(tmp_path):
    done = shell("mtools convert nosuch.mid --to jsonl 2>&-", tmp_path)
    assert done.returncode == 66 and done.stdout == b""
    (tmp_path / "a.mid").write_bytes(score_to_midi(melody("60 62")))
    done = shell("mtools convert a.mid --to jsonl >&-", tmp_path)
    assert done.returncode == 1
    assert done.stderr.decode() == "mtools: stdout: cannot write: it is closed (use -o FILE)\n"


def test_a_model_run_writes_nothing_into_home(tmp_path):
    # ONNX Runtime's telemetry would keep a device id under ~/.cache/Microsoft
    (tmp_path / "home").mkdir()
    done = shell("HOME=$PWD/home mtools continue --model melody_rnn --bars 1 --to jsonl "
                 "</dev/null", tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(b"{")
    assert list((tmp_path / "home").rglob("*")) == []


def test_a_file_where_the_output_folder_should_be_is_named(long_song, tmp_path):
    (tmp_path / "taken").write_bytes(b"")
    done = shell("mtools convert a.mid -o taken/sub/b.mid", tmp_path)
    assert done.returncode == 1 and done.stderr.decode() == (
        "mtools: taken/sub/b.mid: cannot write: taken is a file, not a folder\n")


def test_help_imports_no_numpy_torch_or_onnxruntime():
    code = ("import sys\nfrom mtools.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'torch', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_ctrl_c_with_jobs_ends_every_worker_with_one_line(long_song, tmp_path):
    # One input is a FIFO nobody writes: its worker waits for ever. Ctrl-C
    # reaches the whole process group; the parent must end the workers and
    # say one line, with no worker's traceback.
    import os
    import signal
    import time

    os.mkfifo(tmp_path / "stuck.mid")
    command = [MTOOLS, "convert", "stuck.mid", "a.mid", "--to", "jsonl", "-j", "2", "-o", "out/"]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)  # started, and its workers with it
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130 and stderr == b"mtools: interrupted\n", stderr
