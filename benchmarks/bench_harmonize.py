"""`mtools harmonize` with Coconet: speed, and how often the output breaks
the rules a chorale teacher marks, next to the same counts on Bach.

    benchmarks/quiet_machine.sh .venv/bin/python benchmarks/bench_harmonize.py \\
        [--model coconet] [--repeat 5] [--pieces 76] [--iterations 16 64 128]
        [--allow-parallels 64] [--allow-wide-ranges 64]

- Speed: `mtools harmonize MELODY.mid --seed 1 > out.mid` for a 16-bar 4/4
  melody (the soprano of the first valid chorale that long), start-up
  included, median (min) of --repeat runs after a warm-up; for each
  --iterations value.
- Rules: the soprano of every JSB valid chorale is harmonized in-process
  (`mtools.models.harmonization.fill`, seed = piece index; as the command
  samples by default, and for --allow-parallels' and --allow-wide-ranges'
  iteration counts as with that flag) and compared with Bach's own alto, tenor and bass on the same
  pieces:
  - parallel fifths and octaves (incl. unisons): two voices a perfect
    fifth/octave apart (mod 12) on consecutive chords, both having moved,
    in the same direction; counted per 100 chord changes (a chord change: a
    16th step where any voice changes pitch);
  - voice crossing: steps where a lower voice sounds above the voice above it;
  - spacing: steps with more than an octave between soprano-alto or alto-tenor;
  - range: voice-steps outside the textbook SATB ranges (S C4-G5, A G3-D5,
    T C3-G4, B E2-C4);
  - the share of chord changes whose four sounding pitch classes form a
    major or minor triad or a dominant seventh (complete or missing the fifth);
  - how busy the lower voices are: new notes per bar per voice (a run of
    one pitch counts as one note, as the 16th-note grid cannot tell a
    repeated note from a held one).
Rewrites the `bench_harmonize` section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _results import machine_info, time_commands, write_section

from mtools.io.midi import score_to_midi
from mtools.models.coconet import PARALLEL_WEIGHT, RANGE_WEIGHT, REST, VOICE_RANGES, Coconet, \
    GibbsOptions
from mtools.models.harmonization import FillOptions, fill, fold, soprano_shift, voice_notes
from mtools.models.registry import resolve_model
from mtools.score import Score, Tempo, TempoMap, TimeSignature
from mtools.training.chorales import load_chorales

SECTION = "bench_harmonize"
GOAL_S = 3.0
BARS, STEPS_PER_BAR = 16, 16
ROOT = Path(__file__).resolve().parents[1]


def melody_file(chorales: list[np.ndarray], folder: Path) -> Path:
    steps = BARS * STEPS_PER_BAR
    chorale = next(c for c in chorales if len(c) >= steps)
    tempos = (Tempo(0.0, 120.0),)
    notes = voice_notes(chorale[:steps, 0], 0, TempoMap(tempos), 4, 80, 0)
    score = Score(notes=tuple(notes), tempos=tempos,
                  time_signatures=(TimeSignature(0.0, 4, 4),))
    path = folder / "melody16.mid"
    path.write_bytes(score_to_midi(score))
    return path


def chord_changes(chorale: np.ndarray) -> np.ndarray:
    """Indices t ≥ 1 where any voice changes pitch."""
    return np.nonzero((chorale[1:] != chorale[:-1]).any(axis=1))[0] + 1


def rule_counts(chorale: np.ndarray) -> dict:
    changes = chord_changes(chorale)
    sounding = chorale != REST
    parallels = 0
    for t in changes:
        before, after = chorale[t - 1].astype(int), chorale[t].astype(int)
        for a in range(4):
            for b in range(a + 1, 4):
                if REST in (before[a], before[b], after[a], after[b]):
                    continue
                moved_a, moved_b = after[a] - before[a], after[b] - before[b]
                if moved_a == 0 or moved_b == 0 or np.sign(moved_a) != np.sign(moved_b):
                    continue
                perfect = {(before[a] - before[b]) % 12, (after[a] - after[b]) % 12}
                if perfect in ({0}, {7}):
                    parallels += 1
    both = sounding[:, :-1] & sounding[:, 1:]
    crossing = ((chorale[:, 1:] > chorale[:, :-1]) & both).any(axis=1)
    upper = sounding[:, :3] & sounding[:, 1:]
    gaps = (chorale[:, :2].astype(int) - chorale[:, 1:3]) > 12
    spacing = (gaps & upper[:, :2]).any(axis=1)
    out_of_range = sum(int(((chorale[:, v] < lo) | (chorale[:, v] > hi))[sounding[:, v]].sum())
                       for v, (lo, hi) in enumerate(VOICE_RANGES))
    chords = sum(is_common_chord(chorale[t]) for t in changes)
    lower = chorale[:, 1:]
    onsets = int(((lower[1:] != lower[:-1]) & (lower[1:] != REST)).sum() + (lower[0] != REST).sum())
    return {"changes": len(changes), "parallels": parallels, "steps": len(chorale), "onsets": onsets,
            "crossing": int(crossing.sum()), "spacing": int(spacing.sum()),
            "voice_steps": int(sounding.sum()), "out_of_range": out_of_range, "chords": chords}


def is_common_chord(frame: np.ndarray) -> bool:
    classes = {int(p) % 12 for p in frame if p != REST}
    for root in range(12):
        rel = {(c - root) % 12 for c in classes}
        if rel in ({0, 4, 7}, {0, 3, 7}, {0, 4, 7, 10}, {0, 4, 10}):
            return True
    return False


def summarize(counts: list[dict]) -> dict:
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    return {"parallels per 100 changes": 100 * total["parallels"] / max(total["changes"], 1),
            "crossing % of steps": 100 * total["crossing"] / total["steps"],
            "spacing % of steps": 100 * total["spacing"] / total["steps"],
            "out of range % of notes-steps": 100 * total["out_of_range"] / total["voice_steps"],
            "common chords % of changes": 100 * total["chords"] / max(total["changes"], 1),
            "A/T/B notes per bar": total["onsets"] / 3 / (total["steps"] / STEPS_PER_BAR)}


def harmonize_all(net: Coconet, chorales: list[np.ndarray], iterations: int,
                  temperature: float, parallel_weight: float = PARALLEL_WEIGHT,
                  range_weight: float = RANGE_WEIGHT) -> list[np.ndarray]:
    options = FillOptions(sampling=GibbsOptions(iterations=iterations, temperature=temperature,
                                                parallel_weight=parallel_weight,
                                                range_weight=range_weight))
    outputs = []
    for index, chorale in enumerate(chorales):
        soprano = chorale[:, 0]
        shift = soprano_shift(soprano[soprano != REST])
        batch = np.full((1, *chorale.shape), REST, np.int16)
        batch[0, :, 0] = np.where(soprano == REST, REST,
                                  fold(soprano + shift, net.space.min_pitch, net.space.max_pitch))
        free = np.ones(batch.shape, bool)
        free[:, :, 0] = False
        filled = fill(net, batch, free, options, np.random.default_rng(index))[0]
        out = np.where(filled == REST, REST, filled - shift).astype(np.int16)
        out[:, 0] = soprano
        outputs.append(out)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="coconet")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pieces", type=int, default=76)
    parser.add_argument("--iterations", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--temperature", type=float, default=GibbsOptions().temperature)
    parser.add_argument("--allow-parallels", type=int, nargs="*", default=[64], metavar="N",
                        help="iteration counts also scored with --allow-parallels")
    parser.add_argument("--allow-wide-ranges", type=int, nargs="*", default=[64], metavar="N",
                        help="iteration counts also scored with --allow-wide-ranges")
    args = parser.parse_args()
    mtools = str(Path(sys.executable).with_name("mtools"))
    valid = load_chorales("jsb", "valid")
    rows = ["| Gibbs iterations | 16-bar harmonize, end to end (s) | goal < 3 s |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        melody = melody_file(valid, Path(tmp))
        out = Path(tmp) / "out.mid"
        for iterations in args.iterations:
            command = [mtools, "harmonize", str(melody), "--model", args.model, "--seed", "1",
                       "--iterations", str(iterations), "--temperature", str(args.temperature),
                       "-o", str(out)]
            stats = time_commands({"run": command}, args.repeat)["run"]
            met = "met" if stats.median_s < GOAL_S else "missed"
            rows.append(f"| {iterations} | {stats.cell()} | {met} |")
        subprocess.run(command, check=True)
    net = Coconet.from_ref(resolve_model(args.model))
    pieces = valid[:args.pieces]
    results = {"Bach (the valid chorales)": summarize([rule_counts(c) for c in pieces])}
    runs = [(iterations, "") for iterations in args.iterations]
    runs += [(iterations, "--allow-parallels") for iterations in args.allow_parallels]
    runs += [(iterations, "--allow-wide-ranges") for iterations in args.allow_wide_ranges]
    for iterations, flag in runs:
        made = harmonize_all(net, pieces, iterations, args.temperature,
                             1.0 if flag == "--allow-parallels" else PARALLEL_WEIGHT,
                             1.0 if flag == "--allow-wide-ranges" else RANGE_WEIGHT)
        label = f"mtools, {iterations} iterations, temperature {args.temperature:g}" + (
            f", {flag}" if flag else "")
        results[label] = summarize([rule_counts(c) for c in made])
    names = list(next(iter(results.values())))
    table = ["| harmonization of the same sopranos | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for label, figures in results.items():
        table.append(f"| {label} | " + " | ".join(f"{figures[n]:.2f}" for n in names) + " |")
    command = "benchmarks/quiet_machine.sh .venv/bin/python benchmarks/bench_harmonize.py " + \
        shlex.join(sys.argv[1:])
    body = "\n".join([
        "## harmonize (Coconet): speed and chorale-rule counts",
        "",
        machine_info(["onnxruntime", "numpy"], command.strip()),
        f"- model: {args.model} ({resolve_model(args.model).onnx_path.stat().st_size / 1e6:.1f} MB)",
        "",
        "Speed: a 16-bar 4/4 melody (soprano of the first valid chorale that long), "
        "`mtools harmonize MELODY.mid --seed 1 --iterations N -o out.mid`, start-up included.",
        "",
        *rows,
        "",
        f"Rules, on the sopranos of {len(pieces)} JSB valid chorales (see the script's "
        "docstring for each rule):",
        "",
        *table,
    ])
    write_section(SECTION, body)
    print(body)


if __name__ == "__main__":
    main()
