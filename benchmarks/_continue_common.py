"""Shared pieces of the `mtools continue` benchmarks (bench_continue.py,
bench_continue_stats.py): which models to measure, a line describing each
(path, size, sha256, dims, training), the 2-bar primers, and what a model's
card says about its data."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _results import Stats, compile_bytecode

ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = ROOT / "benchmarks" / ".work" / "continue"
TASK = "continue"
CHORDS = "C G Am F"  # improv_rnn's progression in the speed benchmark, one chord per bar
PRIMER_QPM = 120.0
STEPS_PER_BAR = 16  # the primers are 4/4 in 16th notes
PRIMER_BARS = 2
# "Ode to joy", two bars in 16ths: pitch starts a note, "_" holds it.
PRIMER_MELODY = ("64 _ _ _ 64 _ _ _ 65 _ _ _ 67 _ _ _ "
                 "67 _ _ _ 65 _ _ _ 64 _ _ _ 62 _ _ _")
# A rock beat: (GM drum key, velocity, 16th steps of the bar it is struck on).
PRIMER_GROOVE = ((36, 100, (0, 8, 10)), (38, 96, (4, 12)),
                 (42, 80, (0, 4, 8, 12)), (42, 56, (2, 6, 10, 14)))


def mtools_bin() -> Path:
    """The `mtools` script of the interpreter running the benchmark."""
    return Path(sys.executable).with_name("mtools")


def bundled_continue_models() -> list[str]:
    """Specs of every model `mtools models --json` lists for `continue`."""
    out = subprocess.run([str(mtools_bin()), "models", "--json"], capture_output=True,
                         check=True).stdout
    return [card["name"] + (f":{card['config']}" if card.get("config") else "")
            for card in json.loads(out or b"[]")
            if TASK in [card.get("task"), *card.get("other_tasks", [])]]


def chosen_models(specs: list[str] | None, script: str) -> list:
    """ModelRefs of the --model values, else of every bundled `continue`
    model; exits with a message when there are none."""
    from mtools.models.registry import resolve_model

    specs = specs or bundled_continue_models()
    if not specs:
        sys.exit(f"{script}: no bundled `continue` model (mtools models --json lists none); "
                 "pass --model NAME_OR_PATH, e.g. --model ~/.cache/mtools/export/"
                 "melody_rnn-lookback_rnn.onnx")
    return [resolve_model(spec, task=TASK) for spec in specs]


def model_id(ref) -> str:
    """A short column label: the card's spec ("melody_rnn:lookback_rnn")."""
    return ref.card.spec


def describe_model(ref) -> str:
    """A markdown bullet: spec, file, size, sha256 (checked against the
    card), network dims, training length and held-out NLL from the card."""
    from mtools.models.registry import file_sha256

    card, path = ref.card, ref.onnx_path
    digest = file_sha256(path)
    check = "matches its card" if digest == card.sha256 else f"card says {card.sha256[:12]}…"
    hyper = card.hyperparameters
    dims = f"{hyper.get('layers', '?')}×{hyper.get('hidden', '?')} LSTM, " \
           f"{hyper.get('input_size', '?')} inputs, {hyper.get('num_classes', '?')} classes"
    training = card.training
    trained = (f"trained {training.get('steps', '?')} steps / {training.get('seconds', '?')} s "
               f"on {', '.join(training.get('datasets', [])) or '?'}")
    metrics = card.metrics
    nll = (f"; valid NLL {metrics['nll_per_step']} nats/step (n-gram "
           f"{metrics.get('ngram_nll_per_step', '?')})" if "nll_per_step" in metrics else "")
    bias = card.encoding.get("repeat_bias")
    bias = f"; repeat bias {bias} (fitted on the training split)" if bias else ""
    return (f"- `{card.spec}`: `{_shown_path(path)}`, {path.stat().st_size:,} bytes, sha256 "
            f"`{digest}` ({check}); {dims}; {trained}{nll}{bias}")


def _shown_path(path: Path) -> str:
    """A path relative to the repository or with ~ for the home folder."""
    path = path.resolve()
    for base, shown in ((ROOT, ""), (Path.home(), "~/")):
        if path.is_relative_to(base):
            return shown + str(path.relative_to(base))
    return str(path)


def family_options(family: str) -> list[str]:
    """Extra `mtools continue` options a family needs (improv: chords)."""
    return ["--chords", CHORDS] if family == "improv_rnn" else []


def primer_score(family: str):
    """The 2-bar primer Score of a family: a drum groove for drums_rnn,
    else a melody; 4/4 at PRIMER_QPM, exactly two bars long."""
    from mtools.score import Note, Tempo, TimeSignature, make_score, melody_from_text

    step_s = 60.0 / PRIMER_QPM / 4
    if family != "drums_rnn":
        score = melody_from_text(PRIMER_MELODY, qpm=PRIMER_QPM)
        assert round(score.total_s / step_s) == PRIMER_BARS * STEPS_PER_BAR
        return score
    notes = [Note(key, velocity, (bar * STEPS_PER_BAR + step) * step_s,
                  (bar * STEPS_PER_BAR + step + 2) * step_s, 0, 9, True)
             for bar in range(PRIMER_BARS) for key, velocity, steps in PRIMER_GROOVE
             for step in steps]
    return make_score(notes, tempos=[Tempo(0.0, PRIMER_QPM)],
                      time_signatures=[TimeSignature(0.0, 4, 4)])


def write_primer(family: str) -> Path:
    """The primer as a MIDI file under benchmarks/.work/continue/, written
    by mtools' own MIDI writer."""
    from mtools.io.midi import score_to_midi

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    kind = "groove" if family == "drums_rnn" else "melody"
    path = WORK_DIR / f"primer_{kind}_{PRIMER_BARS}bars.mid"
    path.write_bytes(score_to_midi(primer_score(family)))
    return path


def paused_note() -> str:
    """A markdown bullet saying what quiet_machine.sh paused, if it ran."""
    paused = os.environ.get("QUIET_MACHINE_PAUSED")
    if paused is None:
        return ("- background jobs: NOT paused (run through benchmarks/quiet_machine.sh "
                "for clean timings)")
    count = paused.split(":")[0]
    return f"- background jobs: {count} process(es) paused by benchmarks/quiet_machine.sh " \
           "during the run"


class CpuWatch:
    """How busy the machine was with *other* work between creation and
    `note()`: all CPU time (/proc/stat) less this process's and its waited-
    for children's, per second of wall time."""

    def __init__(self):
        self._start = (_machine_busy_s(), _own_cpu_s(), time.monotonic())

    def note(self) -> str:
        busy, own, wall = (now - then for now, then in zip(
            (_machine_busy_s(), _own_cpu_s(), time.monotonic()), self._start))
        others = max(busy - own, 0.0) / max(wall, 1e-9)
        flag = ("; timings are inflated by that" if others > 0.25 else "")
        return (f"- other processes (not paused: other sessions' work) kept {others:.2f} of "
                f"{os.cpu_count()} cores busy on average during the run{flag}")


def _machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (Linux), 0 elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def out_path(name: str) -> Path:
    """Where the end-to-end runs of one command write their stdout."""
    return WORK_DIR / ("out_" + re.sub(r"[^A-Za-z0-9.-]+", "_", name) + ".mid")


def time_to_files(commands: dict[str, list[str]], repeat: int) -> dict[str, Stats]:
    """Time each command with stdout written to its own out.mid, after one
    untimed warm-up run each, round-robin, mtools' bytecode written first
    (`_results.compile_bytecode`). Raises RuntimeError on failure."""
    def run(name: str, command: list[str]) -> float:
        with open(out_path(name), "wb") as out:
            start = time.perf_counter()
            done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"{shlex.join(command)} exited {done.returncode}: "
                               f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        return elapsed

    compile_bytecode()
    for name, command in commands.items():
        run(name, command)
    runs: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            runs[name].append(run(name, command))
    return {name: Stats(tuple(r)) for name, r in runs.items()}


def output_notes(name: str) -> tuple[int, float]:
    """(notes, seconds) of the last out.mid of a model, read back by mtools."""
    from mtools.io.midi import midi_to_score

    score = midi_to_score(out_path(name).read_bytes())
    return len(score.notes), score.total_s
