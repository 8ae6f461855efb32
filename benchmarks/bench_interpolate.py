"""`mtools interpolate` with MusicVAE: speed, and whether an interpolation
starts at A, ends at B and changes smoothly in between.

    benchmarks/quiet_machine.sh .venv/bin/python benchmarks/bench_interpolate.py \\
        [--models music_vae:mel_2bar music_vae:drums_2bar music_vae:mel_16bar
                  music_vae:trio_16bar music_vae:bass_2bar music_vae:trio_drums_2bar]
        [--speed-only MODEL ...] [--repeat 5] [--pairs 200]
        [--samples 200]

- Speed: `mtools interpolate A.mid B.mid --steps 8 --seed 1 -o out.mid`,
  A and B two windows of the model's valid data written as MIDI, start-up
  included, median (min) of --repeat runs after a warm-up; once with the
  command's default latent search (--fit-rounds 3) and once without it.
  The pair timed is the first whose two windows the posterior means
  decode with mistakes (the search's slow case). --speed-only
  models are timed, not scored: a config not bundled is timed as an
  untrained network of its size (needs torch), since its speed does not
  depend on the weights.
- Endpoints and smoothness, on --pairs random pairs of valid windows
  (in-process, as the command decodes: posterior means, then --fit-rounds
  rounds of latent search (0, as Magenta, and the command's default),
  slerp, 8 points):
  - endpoint accuracy: the share of steps (a trio: of step and part
    cells) of the first decoded point equal to A's and of the last equal
    to B's (the command decodes both ends
    greedily; the points between at temperature 0 and at the command's
    default 0.5);
  - hop: the share of steps that differ between consecutive points, mean and
    largest over the path, next to the share that differs between A and B;
  - monotone: the share of consecutive points where the distance (share of
    steps that differ) to A's reconstruction does not fall.
- Prior samples (melody models; a trio's melody and bass): statistics of
  --samples draws of z from N(0, I), decoded as `--sample` does
  (temperature 0.5, seed 1), next to as many random valid windows
  (_music_stats: "close" when |Δ| <= 0.5 SD of the data's windows), each
  window's scale its best-fitting major key.
Rewrites the `bench_interpolate` section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from _music_stats import (TV_CLOSE, cell, close_cell, interval_histogram, melody_stats, summarize,
                          total_variation)
from _results import machine_info, time_commands, write_section

from mtools.io.midi import score_to_midi
from mtools.models.events import NO_EVENT, melody_major_key
from mtools.models.interpolation import (FIT_ROUNDS, InterpolateOptions, fit_latents, path,
                                         windows_to_scores)
from mtools.models.music_vae import MusicVae
from mtools.models.registry import resolve_model
from mtools.training.vae_windows import find_config, load_windows

SECTION = "bench_interpolate"
GOAL_S = 1.0
POINTS = 8


def window_file(model: MusicVae, ids: np.ndarray, path: Path) -> Path:
    score = windows_to_scores(ids[None], model.space, 120.0, InterpolateOptions(concat=True), {})[0]
    path.write_bytes(score_to_midi(score))
    return path


def resolve_speed_model(spec: str, folder: Path):
    """The model `spec`, or where none is bundled, an untrained network of
    its config's size exported into `folder`."""
    from mtools.errors import ModelNotFoundError

    try:
        return resolve_model(spec)
    except ModelNotFoundError:
        import torch

        from mtools.models.music_vae import GRAPH_INPUTS, GRAPH_OUTPUTS
        from mtools.models.registry import write_card
        from mtools.training.music_vae import build_network, export_graph

        config = find_config(spec.split(":", 1)[1])
        torch.manual_seed(0)
        model = build_network(config).eval()
        path = folder / f"music_vae-{config.name}.onnx"
        export_graph(model, path)
        write_card({"name": "music_vae", "config": config.name, "task": config.task,
                    "inputs": list(GRAPH_INPUTS), "outputs": list(GRAPH_OUTPUTS),
                    "hyperparameters": dict(model.config), "encoding": config.space.to_card(),
                    "description": "untrained, for timing only"}, path)
        return resolve_model(str(path))


def path_figures(model: MusicVae, pairs: np.ndarray, options: InterpolateOptions) -> dict:
    """Endpoint accuracy and smoothness over pairs (n, 2, steps), each
    decoded as the command does (`path`), pair i with seed options.seed + i."""
    ends, hops, largest, spans, monotone = [], [], [], [], []
    for i, (a, b) in enumerate(pairs):
        _, rows = path(model, np.stack([a, b]), replace(options, seed=options.seed + i))
        # (step, part) cells: a trio's three parts each count
        rows, a, b = (model.space.parts(x).reshape(*x.shape[:-1], -1) for x in (rows, a, b))
        ends += [(rows[0] == a).mean(), (rows[-1] == b).mean()]
        hop = (rows[1:] != rows[:-1]).mean(axis=1)
        hops.append(hop.mean())
        largest.append(hop.max())
        spans.append((a != b).mean())
        to_a = (rows != rows[0]).mean(axis=1)
        monotone.append((np.diff(to_a) >= 0).mean())
    return {"endpoint accuracy": np.mean(ends), "mean hop": np.mean(hops),
            "largest hop": np.mean(largest), "A vs B": np.mean(spans),
            "monotone": np.mean(monotone)}


WINDOW_WORDS = {"notes in the primer's major scale": "notes in the window's major scale",
                "notes longer than 2 bars, per piece": "notes longer than 2 bars, per window",
                "notes outside 21..108, per piece": "notes outside 21..108, per window",
                "continuations with no note": "windows with no note"}  # _music_stats' names


def window_stats(model: MusicVae, rows: np.ndarray, part: int = 0):
    """melody_stats of each window of ids (n, steps) (a trio's `part`), and
    its intervals."""
    stats, intervals = [], []
    for ids in rows:
        events = model.space.events_from_ids(ids)
        events = events[:, part] if events.ndim == 2 else events
        marks = np.flatnonzero(events != NO_EVENT)
        notes = [(int(events[step]), int(step), int(marks[i + 1]) if i + 1 < len(marks)
                  else len(events)) for i, step in enumerate(marks) if events[step] >= 0]
        got, steps = melody_stats(notes, 0, len(events), 16, melody_major_key(events))
        stats.append(got)
        intervals.append(steps)
    return summarize(stats), interval_histogram(intervals)


def prior_rows(spec: str, model: MusicVae, valid: np.ndarray, count: int) -> list[str]:
    """The prior-samples table's rows for one melody model (a trio: its
    melody and its bass line)."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((count, model.z_size)).astype(np.float32)
    samples = model.decode(z, temperature=0.5, rng=rng)
    picks = np.random.default_rng(0).choice(len(valid), size=min(count, len(valid)),
                                            replace=False)
    rows = []
    for part, line in enumerate(["melody", "bass"] if model.space.kind == "trio" else [""]):
        label = f"{spec} {line}".strip()
        sampled, sampled_intervals = window_stats(model, samples, part)
        data, data_intervals = window_stats(model, valid[picks], part)
        rows += [f"| {label} | {WINDOW_WORDS.get(name, name)} | {cell(data[name])} | "
                 f"{cell(sampled[name])} | {close_cell(data[name], sampled[name])} |"
                 for name in data]
        tv = total_variation(data_intervals, sampled_intervals)
        rows.append(f"| {label} | interval histogram, total variation | — | {tv:.3f} | "
                    f"{'yes' if tv <= TV_CLOSE else 'NO'} (≤ {TV_CLOSE}) |")
    return rows


def timed_pair(model: MusicVae, pairs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, bool]:
    """The first pair whose two windows the posterior means both decode
    wrongly somewhere, so the timed command's search runs its every round,
    else the first two such valid windows (a model that reconstructs almost
    every window needs them), and True; else the first pair and False."""
    for pair in pairs:
        if np.all(fit_latents(model, pair, rounds=0).right < 1):
            return pair, True
    wrong = []
    for start in range(0, len(valid), 256):
        rows = valid[start:start + 256]
        wrong += list(rows[fit_latents(model, rows, rounds=0).right < 1][:2 - len(wrong)])
        if len(wrong) == 2:
            return np.stack(wrong), True
    return pairs[0], False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+",
                        default=["music_vae:mel_2bar", "music_vae:drums_2bar",
                                 "music_vae:mel_16bar", "music_vae:trio_16bar",
                                 "music_vae:bass_2bar", "music_vae:trio_drums_2bar"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200,
                        help="prior draws (and valid windows) per melody model")
    parser.add_argument("--speed-only", nargs="*", default=[],
                        metavar="MODEL",
                        help="models timed but not scored (e.g. an untrained network of a "
                             "config's size, for its speed)")
    args = parser.parse_args()
    mtools = str(Path(sys.executable).with_name("mtools"))
    speed = ["| model | bars | --fit-rounds | 8-point interpolation, end to end (s) | "
             "goal < 1 s (2 bars) |", "|---|---|---|---|---|"]
    quality = ["| model | --fit-rounds | temperature | endpoint accuracy | mean hop | largest hop | "
               "A vs B | monotone |", "|---|---|---|---|---|---|---|---|"]
    prior = ["| model | statistic | valid windows | prior samples | close? |",
             "|---|---|---|---|---|"]
    sizes = []
    untrained = tempfile.TemporaryDirectory()
    for spec in [*args.models, *args.speed_only]:
        ref = resolve_speed_model(spec, Path(untrained.name)) if spec in args.speed_only \
            else resolve_model(spec)
        model = MusicVae.from_ref(ref)
        scored = spec in args.models
        label = spec if scored else f"{ref.card.spec}, untrained weights (speed only)"
        sizes.append(f"{label} {ref.onnx_path.stat().st_size / 1e6:.1f} MB")
        config = find_config(ref.card.config)
        valid = load_windows(config, config.default_sources, "valid").astype(np.int64)
        rng = np.random.default_rng(0)
        pairs = valid[rng.choice(len(valid), size=(args.pairs, 2))]
        bars = model.space.steps // 16
        with tempfile.TemporaryDirectory() as tmp:
            timed, searched = timed_pair(model, pairs, valid) if scored else (pairs[0], False)
            a = window_file(model, timed[0], Path(tmp) / "a.mid")
            b = window_file(model, timed[1], Path(tmp) / "b.mid")
            command = [mtools, "interpolate", str(a), str(b), "--model", str(ref.onnx_path),
                       "--steps", str(POINTS), "--seed", "1", "-o", str(Path(tmp) / "out.mid")]
            runs = {rounds: [*command, "--fit-rounds", str(rounds)] for rounds in (FIT_ROUNDS, 0)}
            times = time_commands(runs, args.repeat)
        for rounds, stats in times.items():
            met = ("met" if stats.median_s < GOAL_S else "missed") if bars == 2 else "(no goal)"
            note = "" if searched or not rounds else " (no valid window needed the search)"
            speed.append(f"| {label} | {bars} | {rounds}{note} | {stats.cell()} | {met} |")
        if not scored:
            continue
        if model.space.kind in ("melody", "trio"):
            prior += prior_rows(spec, model, valid, args.samples)
        for rounds, temperature in [(r, t) for r in (0, FIT_ROUNDS) for t in (0.0, 0.5)]:
            f = path_figures(model, pairs, InterpolateOptions(
                steps=POINTS, temperature=temperature, seed=1, fit_rounds=rounds))
            quality.append(f"| {spec} | {rounds} | {temperature:g} | {f['endpoint accuracy']:.3f} | "
                           f"{f['mean hop']:.3f} | {f['largest hop']:.3f} | {f['A vs B']:.3f} | "
                           f"{f['monotone']:.3f} |")
    command = "benchmarks/quiet_machine.sh .venv/bin/python benchmarks/bench_interpolate.py " + \
        shlex.join(sys.argv[1:])
    body = "\n".join([
        "## interpolate (MusicVAE): speed, endpoints and smoothness",
        "",
        machine_info(["onnxruntime", "numpy"], command.strip()),
        f"- models: {', '.join(sizes)}",
        "",
        "Speed: `mtools interpolate A.mid B.mid --steps 8 --seed 1 -o out.mid --fit-rounds N` "
        "(two valid windows that the posterior means decode with mistakes, so every search "
        "round runs: the slow case), start-up included.",
        "",
        *speed,
        "",
        f"Endpoints and smoothness over {args.pairs} random pairs of valid windows, "
        f"{POINTS} points each (see the script's docstring):",
        "",
        *quality,
        "",
        f"Prior samples: {args.samples} draws of z from N(0, I), decoded at temperature 0.5, "
        f"next to {args.samples} random valid windows (per window; see the script's docstring):",
        "",
        *prior,
    ])
    write_section(SECTION, body)
    print(body)


if __name__ == "__main__":
    main()
