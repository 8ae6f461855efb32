"""Speed of `mtools continue` (Melody / Drums / Improv RNN): end to end as a
subprocess, and in-process generation at batch 1 and 64 on ONNX Runtime
next to the same network in torch eager.

Run in the dev venv (torch for the eager comparison), with background jobs
paused:

    benchmarks/quiet_machine.sh .venv/bin/python benchmarks/bench_continue.py \\
        [--model SPEC_OR_PATH ...] [--checkpoint CKPT ...] [--repeat 10]

Per model (default: every bundled `continue` model):
  - end to end: `mtools continue PRIMER.mid --model M --bars 8 --seed 1 >
    out.mid` from a 2-bar primer (melody; a groove for drums_rnn; improv_rnn
    also gets --chords), start-up included, after one warm-up run;
  - generation: `mtools.models.sequence.generate` (8 bars = 128 steps after
    the primer) at batch 1 and 64, and one network step alone, on ONNX
    Runtime (also with the int8 weights turned back into float32, to
    show what int8 gains or costs) and on the same network in torch eager
    (from --checkpoint when one matches the card's dims, else an EventLSTM
    of those dims with random weights: the speed depends on the dims only);
  - when the end-to-end time misses the goal (or --profile always): where
    the time goes, from `python -X importtime` and cProfile.
Rewrites the `bench_continue` section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from _cli_profile import (cumulative_s, import_rows, import_times, module_s, phase_rows,
                          profile_run, top_self_time)
from _continue_common import (CHORDS, ROOT, STEPS_PER_BAR, CpuWatch, chosen_models,
                              describe_model, family_options, model_id, mtools_bin,
                              output_notes, paused_note, primer_score, time_to_files,
                              write_primer)
from _rnn_variants import (FLOAT32, ORT, engines_for, network_flops, torch_default_threads,
                           weight_share)
from _results import Stats, machine_info, time_calls, time_commands, write_section

SECTION = "bench_continue"
GOAL_E2E_S = 0.5
GOAL_BATCH_RATIO = 20.0
BATCHES = (1, 64)
NETWORK_CALLS = 50  # network steps per timed call of the step micro-benchmark
# (label, file, function) of the run's phases, for the cProfile table.
PHASES = (
    ("whole program under cProfile (`cli.main`)", "mtools/cli.py", "main"),
    ("import `mtools.cli` (typer, rich, commands)", "mtools/cli.py", "<module>"),
    ("typer: build option coercions (`_coercion.build_runtime_param`)",
     "typer/_coercion.py", "build_runtime_param"),
    ("command body (`continue_`)", "mtools/commands/continue_.py", "continue_"),
    ("· import the model code (`models/continuation.py`, numpy first)",
     "mtools/models/continuation.py", "<module>"),
    ("· read the primer (`read_scores`)", "mtools/io/formats.py", "read_scores"),
    ("· load the model (`EventRnn.from_ref`)", "mtools/models/sequence.py", "from_ref"),
    ("· · sha256 check (`ModelRef.verify`)", "mtools/models/registry.py", "verify"),
    ("· · import onnxruntime (`_import_ort`)", "mtools/runtime.py", "_import_ort"),
    ("· generate 128 steps (`generate`)", "mtools/models/sequence.py", "generate"),
    ("· · ONNX Runtime calls (`Session.run`)", "mtools/runtime.py", "run"),
    ("· write the MIDI (`encode_scores`)", "mtools/io/formats.py", "encode_scores"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", metavar="SPEC_OR_PATH",
                        help="a model name or .onnx path (repeatable; default: every "
                             "bundled `continue` model)")
    parser.add_argument("--checkpoint", action="append", type=Path, default=[],
                        help="a training checkpoint; used for the torch side of the model "
                             "whose card has its dims (repeatable)")
    parser.add_argument("--repeat", "-n", type=int, default=10, metavar="N",
                        help="timed end-to-end runs per model (default 10)")
    parser.add_argument("--gen-repeat", type=int, default=5, metavar="N",
                        help="timed in-process generations per engine and batch (default 5)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile the end-to-end run when it misses the goal (auto)")
    parser.add_argument("--compare-python", metavar="PYTHON",
                        help="also time `PYTHON -m mtools continue ...` with PYTHONPATH=src "
                             "(e.g. a venv with other dependency versions)")
    parser.add_argument("--no-write", action="store_true",
                        help="print the section, do not touch results.md")
    return parser.parse_args()


# --- end to end -----------------------------------------------------------------


def cli_command(ref, primer: Path, launcher: list[str]) -> list[str]:
    return [*launcher, "continue", str(primer), "--model", str(ref.onnx_path),
            "--bars", "8", "--seed", "1", *family_options(ref.card.name)]


# --- in-process generation -------------------------------------------------------


def primer_ids(ref, num_steps: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The benchmark primer as model ids, as the family's `continue` makes
    them, and improv_rnn's chord controls (CHORDS cycled) for the whole run."""
    from mtools.models.encoding import melody_event_ids
    from mtools.models.events import primer_drum_track, primer_melody, squash_melody
    from mtools.models.improv_rnn import chord_controls, resolve_progression
    from mtools.models.melody_rnn import MelodySpace

    family, encoding = ref.card.name, ref.card.encoding
    score = primer_score(family)
    if family == "drums_rnn":
        return np.asarray(primer_drum_track(score).events, np.int64), None
    events = np.asarray(primer_melody(score).events)
    if family == "melody_rnn":
        return MelodySpace.from_card(encoding).to_model(events)[0], None
    low, high = int(encoding["min_note"]), int(encoding["max_note"])
    ids = melody_event_ids(squash_melody(events, low, high, None)[0], low, high)
    rows = resolve_progression(CHORDS, STEPS_PER_BAR)
    return ids, chord_controls(np.resize(rows, (len(ids) + num_steps + 1, 3)))


def measure_generation(engines: dict, ids: np.ndarray, control, num_steps: int,
                       repeat: int) -> dict[tuple[str, int], dict]:
    """Per (engine, batch): Stats of one `generate` call of num_steps steps
    and of NETWORK_CALLS single network steps."""
    from mtools.models.sequence import SearchOptions, generate

    results = {}
    for engine, rnn in engines.items():
        for batch in BATCHES:
            def gen(rnn=rnn, batch=batch):
                generate(rnn, ids, num_steps, num_outputs=batch, options=SearchOptions(),
                         rng=np.random.default_rng(1), control=control)

            step_input = np.zeros((batch, 1, rnn.encoding.input_size + rnn.control_size),
                                  np.float32)
            state = rnn.zero_state(batch)  # used up by each run (rings), which times the same

            def steps(rnn=rnn, step_input=step_input, state=state):
                for _ in range(NETWORK_CALLS):
                    rnn.run(step_input, state)

            timed = time_calls({"gen": gen, "step": steps}, repeat)
            results[engine, batch] = timed
    return results


def generation_profile(rnn, ids, control, num_steps: int, batch: int) -> list:
    """cProfile of one in-process `generate` call: the top 4 own-time rows."""
    import cProfile
    import pstats

    from mtools.models.sequence import SearchOptions, generate

    profiler = cProfile.Profile()
    profiler.enable()
    generate(rnn, ids, num_steps, num_outputs=batch, options=SearchOptions(),
             rng=np.random.default_rng(1), control=control)
    profiler.disable()
    return top_self_time(pstats.Stats(profiler), 4)


# --- report ---------------------------------------------------------------------


def e2e_table(e2e: dict[str, Stats], notes: dict[str, tuple[int, float]],
              reference: dict[str, Stats]) -> list[str]:
    lines = ["| end to end (subprocess), seconds | median (min) | goal < 0.5 s | output |",
             "|---|---|---|---|"]
    for name, stats in e2e.items():
        ok = "met" if stats.median_s < GOAL_E2E_S else "NOT met"
        count, seconds = notes[name]
        model, variant = re.match(r"([a-z0-9_:]+),? ?(.*)", name).groups()
        lines.append(f"| `mtools continue … --model {model}` {variant} | {stats.cell()} | "
                     f"{ok} | {count} notes, {seconds:.1f} s |")
    for label, stats in reference.items():
        lines.append(f"| {label} | {stats.cell()} | | |")
    return lines


def generation_table(name: str, timed: dict, about: tuple, num_steps: int) -> list[str]:
    source, flops = about
    lines = []
    base = {}
    for (engine, batch), stats in timed.items():
        gen_s = stats["gen"].median_s
        per_seq = num_steps / gen_s
        throughput = batch * per_seq
        base.setdefault(engine, throughput)
        step_us = stats["step"].median_s / NETWORK_CALLS * 1e6
        share = num_steps * step_us / 1e6 / gen_s
        weights = (source if engine.startswith("torch") else
                   "the .onnx's int8 weights as float32" if engine == FLOAT32 else "the .onnx")
        speed = f"{flops * batch / step_us / 1e3:.1f}" if flops else "—"
        lines.append(f"| `{name}` | {engine} ({weights}) | {batch} | {stats['gen'].cell()} | "
                     f"{per_seq:,.0f} | {throughput:,.0f} | {throughput / base[engine]:.1f}× | "
                     f"{step_us:,.0f} | {speed} | {share:.0%} |")
    return lines


def profile_section(name: str, command: list[str], python_start: Stats) -> tuple:
    """Import and phase tables for one end-to-end command (script first):
    (markdown lines, importtime's top-level imports, cProfile statistics)."""
    tops = import_times(command)
    stats = profile_run(command)
    lines = [f"### Where the end-to-end time goes (`{name}`)", "",
             f"Interpreter start-up alone (`python -c pass`): {python_start.cell()} s.", "",
             "Imports (`python -X importtime`, cumulative ms, top level; heaviest parts):", "",
             "| module | ms | heaviest parts, ms |", "|---|---|---|", *import_rows(tops), "",
             "Phases (cProfile, cumulative ms; inflated by the profiler, read as shares):", "",
             "| phase | ms | share |", "|---|---|---|", *phase_rows(stats, PHASES)]
    return lines, tops, stats


def findings(name: str, e2e: dict[str, Stats], timed: dict, tops, stats) -> list[str]:
    """What the profile says would bring the run under the goal, in numbers."""
    import typer

    whole = cumulative_s(stats, "mtools/cli.py", "main") or 1.0
    share = lambda suffix, function: (cumulative_s(stats, suffix, function) or 0.0) / whole
    lines = ["", "Reading:"]
    if module_s(tops, "typer._adapters"):
        coercion = share("typer/_coercion.py", "build_runtime_param")
        lines.append(
            f"- typer {typer.__version__} coerces every option through pydantic at parse time: "
            f"importing it (`typer._adapters` {module_s(tops, 'typer._adapters') * 1e3:.0f} ms) "
            f"and building a TypeAdapter per option ({coercion:.0%} of the profiled run). "
            "typer 0.28 has no pydantic in it; pinning `typer>=0.12,<0.29` removes the cost"
            + compared(e2e))
    for module in ("numpy", "onnxruntime"):
        lines.append(f"- importing {module}: {module_s(tops, module) * 1e3:.0f} ms "
                     "(needed for any generation).")
    one, auto = (timed[engine, 1]["gen"].median_s for engine in ("onnxruntime, 1 thread",
                                                                   "onnxruntime"))
    verdict = ("a one-thread default for event-RNN sessions would help on 2 cores"
               if one < 0.8 * auto else "the thread count makes little difference here")
    lines.append(f"- generating 8 bars takes {auto * 1e3:.0f} ms in-process with the CLI's "
                 f"threads and {one * 1e3:.0f} ms with one ONNX Runtime thread (end to end "
                 f"with MTOOLS_THREADS=1: {e2e[f'{name}, MTOOLS_THREADS=1'].median_s:.3f} s): "
                 f"{verdict}.")
    return lines


def compared(e2e: dict[str, Stats]) -> str:
    """The --compare-python medians as a clause ("." when there are none)."""
    rows = [(name.split(" via ")[0], "THREADS" in name, stats.median_s)
            for name, stats in e2e.items() if " via " in name]
    if not rows:
        return "."
    plain = ", ".join(f"{model} {s:.3f} s" for model, threads, s in rows if not threads)
    single = ", ".join(f"{model} {s:.3f} s" for model, threads, s in rows if threads)
    return f" (measured medians with it: {plain}; with MTOOLS_THREADS=1 as well: {single})."


def report(refs, e2e, notes, reference, generation, sources, gen_profiles, shares,
           profile_lines, command, num_steps, repeat, busy_note: str) -> str:
    from mtools.models.sequence import SMALL_BATCH_ROWS

    lines = ["## `mtools continue`: speed of the event RNNs", "",
             "Written by `benchmarks/bench_continue.py`.", "",
             machine_info(["mtools", "onnxruntime", "numpy", "torch", "typer"], command),
             paused_note(), busy_note,
             f"- threads: ONNX Runtime intra-op {os.environ.get('MTOOLS_THREADS') or 'auto'}, "
             f"torch {torch_default_threads()} (its default)",
             *[describe_model(ref) for ref in refs], "",
             f"Primer: 2 bars of 4/4 at 120 qpm written by mtools' MIDI writer "
             f"(`benchmarks/.work/continue/`); improv_rnn also gets `--chords \"{CHORDS}\"`. "
             f"{repeat} timed runs after one warm-up, stdout to `out.mid`.", "",
             *e2e_table(e2e, notes, reference), "",
             f"In-process generation: `mtools.models.sequence.generate`, {num_steps} steps "
             "(8 bars) after the same primer, plain sampling; median (min) seconds per call. "
             "steps/s per sequence = steps / time; sequence-steps/s = batch × that; "
             f"network step = one `run` of one step ({NETWORK_CALLS} timed together); "
             "network GFLOP/s = the step's matrix products (2 × multiply-adds) per second; "
             "network share = steps × network step / generate time. \"onnxruntime\" runs "
             "with intra-op threads auto, \"1 thread\" with one (the CLI runs up to "
             f"{SMALL_BATCH_ROWS} rows on one thread, more on auto, unless $MTOOLS_THREADS "
             "says otherwise: `load_event_rnn`); "
             "torch eager runs the same network "
             "(`benchmarks/_rnn_variants.py`) with torch's default threads or one.", "",
             "| model | engine | batch | generate s | steps/s per sequence | "
             "sequence-steps/s | vs batch 1 | network step µs | network GFLOP/s | "
             "network share |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for ref in refs:
        lines += generation_table(model_id(ref), generation[model_id(ref)],
                                  sources[model_id(ref)], num_steps)
    lines += ["", "Own time in one `generate` call (cProfile; seconds):", "",
              "| model | batch | function | calls | own s | cumulative s |",
              "|---|---|---|---|---|---|"]
    for (name, batch), rows in gen_profiles.items():
        lines += [f"| `{name}` | {batch} | `{where}` | {calls} | {own:.3f} | {cum:.3f} |"
                  for where, calls, own, cum in rows]
    lines += ["", "Goals (issue 3):",
              *goal_lines([model_id(r) for r in refs], e2e, generation, shares)]
    lines += int8_lines(generation)
    if profile_lines:
        lines += ["", *profile_lines]
    return "\n".join(lines)


def goal_lines(names: list[str], e2e: dict[str, Stats], generation: dict,
               shares: dict[str, float]) -> list[str]:
    lines = []
    for name in names:
        stats = e2e[name]
        ok = "met" if stats.median_s < GOAL_E2E_S else "NOT met"
        lines.append(f"- `{name}` end to end under {GOAL_E2E_S} s on 2 cores: {ok} "
                     f"({stats.median_s:.3f} s median).")
    for name, timed in generation.items():
        ratio, single = (batch_ratio(timed, engine) for engine in (ORT, f"{ORT}, 1 thread"))
        cli = batch_ratio(timed, ORT, single=f"{ORT}, 1 thread")
        one, many = (timed[ORT, b]["step"].median_s for b in BATCHES)
        ok = "met" if cli >= GOAL_BATCH_RATIO else "NOT met"
        lines.append(f"- `{name}` batch {BATCHES[1]} at least {GOAL_BATCH_RATIO:.0f}× the "
                     f"batch-1 throughput: {ok} ({cli:.1f}× as the CLI runs them, batch 1 on "
                     f"one ONNX Runtime thread and batch {BATCHES[1]} on auto; both on auto "
                     f"{ratio:.1f}×, both on one thread {single:.1f}×; the network step alone "
                     f"scales {BATCHES[1] * one / many:.1f}× (auto), "
                     "the ratio's limit as the per-step Python work shrinks; at batch "
                     f"{BATCHES[1]} the kernels that multiply by the weights (fused LSTM kernels "
                     f"with their gates) take {shares[name]:.0%} of the step's kernel time in "
                     "ONNX Runtime's profile, the rest is work each sequence brings on its "
                     "own).")
    return lines


def int8_lines(generation: dict) -> list[str]:
    """The int8 graph's network step against the same graph with float32
    weights, per model and batch (models shipped as float have no row)."""
    rows = []
    for name, timed in generation.items():
        if (FLOAT32, BATCHES[0]) not in timed:
            continue
        cells = []
        for batch in BATCHES:
            int8, floats = (timed[engine, batch]["step"].median_s for engine in (ORT, FLOAT32))
            cells.append(f"batch {batch}: {int8 / NETWORK_CALLS * 1e6:,.0f} vs "
                         f"{floats / NETWORK_CALLS * 1e6:,.0f} µs ({floats / int8:.2f}×)")
        rows.append(f"- `{name}`: " + "; ".join(cells) + ".")
    if not rows:
        return []
    return ["", "Int8 against float32 weights (the shipped graph and the same graph with its "
            "weights dequantized, CLI threads; network step, median; × = float32 time over "
            "int8's, above 1 when int8 is faster):", *rows]


def batch_ratio(timed: dict, engine: str, single: str | None = None) -> float:
    """Sequence-steps/s at the big batch over those at batch 1 (batch 1 run
    by the engine `single`, when given)."""
    one = timed[single or engine, BATCHES[0]]["gen"].median_s
    return BATCHES[1] * one / timed[engine, BATCHES[1]]["gen"].median_s


def build_commands(refs, compare_python: str | None) -> dict[str, list[str]]:
    """The end-to-end commands: each model as the CLI runs it, with one ONNX
    Runtime thread, and through another interpreter when asked."""
    launcher = [str(mtools_bin())]
    commands = {model_id(r): cli_command(r, write_primer(r.card.name), launcher) for r in refs}
    for ref in refs:
        commands[f"{model_id(ref)}, MTOOLS_THREADS=1"] = ["env", "MTOOLS_THREADS=1",
                                                          *commands[model_id(ref)]]
    if compare_python:
        typer = subprocess.run([compare_python, "-c", "import typer; print(typer.__version__)"],
                               capture_output=True, text=True).stdout.strip() or "?"
        env_cmd = ["env", f"PYTHONPATH={ROOT / 'src'}", compare_python, "-m", "mtools"]
        for ref in refs:
            label = f"{model_id(ref)} via {compare_python} (typer {typer})"
            commands[label] = cli_command(ref, write_primer(ref.card.name), env_cmd)
            commands[f"{label}, MTOOLS_THREADS=1"] = ["env", "MTOOLS_THREADS=1", *commands[label]]
    return commands


def measure_models(refs, args, num_steps: int) -> tuple[dict, dict, dict, dict]:
    """Per model: generation timings, where the torch weights came from,
    cProfile rows of one generate call per batch size, and the weight
    products' share of a network step at the big batch."""
    generation, sources, gen_profiles, shares = {}, {}, {}, {}
    for ref in refs:
        shares[model_id(ref)] = weight_share(ref.onnx_path, BATCHES[1])[1]
        print(f"bench_continue: generation, {model_id(ref)}", file=sys.stderr)
        engines, source = engines_for(ref, args.checkpoint)
        sources[model_id(ref)] = (source, network_flops(engines[ORT]))
        ids, control = primer_ids(ref, num_steps)
        generation[model_id(ref)] = measure_generation(engines, ids, control, num_steps,
                                                       args.gen_repeat)
        for batch in BATCHES:
            gen_profiles[model_id(ref), batch] = generation_profile(
                engines[ORT], ids, control, num_steps, batch)
    return generation, sources, gen_profiles, shares


def main() -> None:
    args = parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # subprocesses keep bytecode caches
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "benchmarks/bench_continue.py",
                          *sys.argv[1:]])
    watch = CpuWatch()
    refs = chosen_models(args.model, "bench_continue")
    commands = build_commands(refs, args.compare_python)
    print(f"bench_continue: end to end, {len(commands)} command(s)", file=sys.stderr)
    e2e = time_to_files(commands, args.repeat)
    notes = {name: output_notes(name) for name in commands}
    reference = {f"`{label}`": stats for label, stats in time_commands({
        "mtools --help": [str(mtools_bin()), "--help"],
        "python -c pass": [sys.executable, "-c", "pass"]}, args.repeat).items()}
    num_steps = 8 * STEPS_PER_BAR
    generation, sources, gen_profiles, shares = measure_models(refs, args, num_steps)
    slow = [model_id(r) for r in refs if e2e[model_id(r)].median_s >= GOAL_E2E_S]
    profile_lines = []
    if args.profile == "always" or (args.profile == "auto" and slow):
        name = slow[0] if slow else model_id(refs[0])
        print(f"bench_continue: profiling {name}", file=sys.stderr)
        profile_lines, tops, stats = profile_section(name, commands[name],
                                                     reference["`python -c pass`"])
        profile_lines += findings(name, e2e, generation[name], tops, stats)
    section = report(refs, e2e, notes, reference, generation, sources, gen_profiles, shares,
                     profile_lines, command, num_steps, args.repeat, watch.note())
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
        print(f"bench_continue: wrote the {SECTION} section of benchmarks/results.md",
              file=sys.stderr)


if __name__ == "__main__":
    main()
