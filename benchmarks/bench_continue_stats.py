"""Musical statistics of `mtools continue` output against the validation
pieces of the model's own training data (Melody / Drums / Improv RNN), with
a sampled n-gram as a reference.

    .venv/bin/python benchmarks/bench_continue_stats.py [--model SPEC_OR_PATH ...]
        [--pieces 64] [--outputs 4] [--data SOURCE ...] [--no-ngram]

Per model (default: every bundled `continue` model): the first bar-aligned
10 bars of up to --pieces validation pieces (one line per piece, spread over
the split) give a 2-bar primer and the real 8 bars that follow. The model
continues each primer by 8 bars --outputs times in one batch
(`mtools.models.continuation.continue_score`, `--num-outputs`, seed 1, 2,
... per primer; improv_rnn plays over the piece's own next chords, one
symbol per beat); an interpolated n-gram fitted on the training split (the
order on the card, else 5) is sampled the same way. Statistics of the three
are compared in one table (see benchmarks/_music_stats.py for the "close?"
rule). For melody models one more row scores the network without its own
sampling: its next-note probabilities on the real new bars (teacher-forced)
as an interval histogram, so a gap in the sampled one can be told apart as
the network's or as sampling's (exposure bias). Rewrites the
`bench_continue_stats` section of benchmarks/results.md (the protocol) and
the parts of the models it measured, each with its own date, command and
model file; other models' parts stay as they were.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from dataclasses import dataclass

import numpy as np
from _continue_common import ROOT, chosen_models, describe_model, model_id
from _music_stats import (TV_CLOSE, cell, close_cell, drum_stats, interval_histogram,
                          melody_stats, summarize, total_variation)
from _results import machine_info, write_section

from mtools.models.events import melody_major_key, melody_to_notes
from mtools.models.registry import BUNDLED_DIR
from mtools.score import ChordSymbol, Score, Tempo, TimeSignature, make_score

SECTION = "bench_continue_stats"
PRIMER_BARS, NEW_BARS = 2, 8
DEFAULT_NGRAM_ORDER = 5
BAR_STEPS = (8, 12, 16, 24)  # meters used: 2/4, 3/4 and 6/8, 4/4, 12/8 (odd ABC meters left out)


@dataclass(frozen=True)
class Case:
    """One validation piece cut into a primer and the real continuation.

    events: the piece's first PRIMER_BARS + NEW_BARS bars, at its own pitch
    (melody events, or drum bitmasks with `velocities` (steps, 9)); ids: the
    same bars as the model's event ids, moved `shift` semitones (melody
    models move into C); chords: improv's real chords over the new bars, one
    symbol per `per_chord` steps; key: the primer's major key (0 = C)."""

    piece: str
    primer: Score
    events: np.ndarray
    velocities: np.ndarray | None
    steps_per_bar: int
    step_s: float
    ids: np.ndarray
    shift: int = 0
    chords: str | None = None
    per_chord: int | None = None
    key: int = 0
    control: np.ndarray | None = None  # improv's chord inputs under `ids`, one row a step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", metavar="SPEC_OR_PATH",
                        help="a model name or .onnx path (repeatable; default: every "
                             "bundled `continue` model)")
    parser.add_argument("--pieces", type=int, default=64, metavar="N",
                        help="validation pieces used as primers (default 64)")
    parser.add_argument("--outputs", type=int, default=4, metavar="N",
                        help="continuations per primer, one batch (default 4)")
    parser.add_argument("--data", action="append", metavar="SOURCE",
                        help="corpus to take pieces from (default: the card's training data)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature (default: the model's own, from its card)")
    parser.add_argument("--choose-temperature", metavar="T,T,...",
                        help="try these temperatures, keep the one whose continuations have "
                             "the fewest statistics far from the data's (ties: the one nearest "
                             "1), write it into the model's card as its default, and report "
                             "at it")
    parser.add_argument("--no-ngram", action="store_true", help="skip the n-gram reference")
    parser.add_argument("--no-write", action="store_true",
                        help="print the section, do not touch results.md")
    return parser.parse_args()


# --- the validation pieces ---------------------------------------------------------


def model_spec(ref):
    from mtools.training.tasks import find_spec

    return find_spec(ref.card.name, ref.card.config or None)


def data_sources(ref, spec, given: list[str] | None) -> list[str]:
    return given or list(ref.card.training.get("datasets") or spec.default_sources)


def pick_items(items: list, count: int) -> list:
    """The first line of each piece in a BAR_STEPS meter long enough for
    primer + continuation, `count` of them spread evenly over the pieces (in
    piece order)."""
    if not items:
        sys.exit("bench_continue_stats: the data has no validation pieces")
    line = (lambda item: item.melody) if hasattr(items[0], "melody") else (lambda item: item)
    first = {}
    for item in items:
        spb = line(item).steps_per_bar
        if spb in BAR_STEPS and len(line(item).events) >= (PRIMER_BARS + NEW_BARS) * spb:
            first.setdefault(line(item).piece, item)
    ordered = [first[piece] for piece in sorted(first)]
    if len(ordered) <= count:
        return ordered
    return [ordered[i] for i in np.linspace(0, len(ordered) - 1, count).round().astype(int)]


def make_case(family: str, encoding: dict, item) -> Case:
    """Cut one validation item into a Case."""
    from mtools.models.chords import chord_name
    from mtools.models.events import drums_to_notes
    from mtools.models.melody_rnn import MelodySpace

    line = item.melody if family == "improv_rnn" else item
    spb = line.steps_per_bar
    total, cut = (PRIMER_BARS + NEW_BARS) * spb, PRIMER_BARS * spb
    events = np.asarray(line.events[:total])
    frame = dict(tempos=[Tempo(0.0, line.qpm)], time_signatures=[TimeSignature(0.0, *line.time_signature)],
                 total_s=cut * line.step_s)
    common = dict(piece=line.piece, events=events, steps_per_bar=spb, step_s=line.step_s)
    if family == "drums_rnn":
        velocities = np.asarray(line.velocities[:total])
        notes = drums_to_notes(events[:cut], step_s=line.step_s, velocities=velocities[:cut])
        return Case(primer=make_score(notes, **frame), velocities=velocities,
                    ids=events.astype(np.int64), **common)
    notes = melody_to_notes(events[:cut], step_s=line.step_s, velocity=90, program=line.program)
    key = melody_major_key(events[:cut])
    if family == "melody_rnn":
        ids, shift = MelodySpace.from_card(encoding).to_model(events)
        return Case(primer=make_score(notes, **frame), velocities=None, ids=ids, shift=shift,
                    key=key, **common)
    from mtools.models.encoding import melody_event_ids
    from mtools.models.events import squash_melody
    from mtools.models.improv_rnn import chord_controls

    low, high = int(encoding["min_note"]), int(encoding["max_note"])
    ids = melody_event_ids(squash_melody(events, low, high, None)[0], low, high)
    rows = item.chords[:total]
    per_chord = math.gcd(spb, 4)
    names = [chord_name(*(int(v) for v in row)) for row in rows]
    symbols = [ChordSymbol(i * line.step_s, name) for i, name in enumerate(names[:cut])
               if i == 0 or name != names[i - 1]]
    ahead = " ".join(names[i] for i in range(cut, total, per_chord))
    return Case(primer=make_score(notes, chords=symbols, **frame), velocities=None, ids=ids,
                chords=ahead, per_chord=per_chord, key=key, control=chord_controls(rows),
                **common)


# --- the three sides ------------------------------------------------------------------


def model_pieces(ref, case: Case, outputs: int, seed: int, temperature: float) -> list:
    """The model's continuations of one case as pieces (see `piece_stats`)."""
    from mtools.models.continuation import ContinueOptions, Length, continue_score
    from mtools.models.events import primer_drum_track

    options = ContinueOptions(model=str(ref.onnx_path), length=Length(bars=NEW_BARS),
                              num_outputs=outputs, seed=seed, temperature=temperature,
                              chords=case.chords, steps_per_chord=case.per_chord)
    total = (PRIMER_BARS + NEW_BARS) * case.steps_per_bar
    pieces = []
    for score in continue_score(case.primer, options).scores:
        if case.velocities is not None:
            track = primer_drum_track(score, num_steps=total)
            pieces.append((track.events, track.velocities))
        else:
            pieces.append([(n.pitch, round(n.start_s / case.step_s), round(n.end_s / case.step_s))
                           for n in score.notes if not n.is_drum])
    return pieces


def data_piece(case: Case):
    """The real continuation as a piece."""
    if case.velocities is not None:
        return case.events, case.velocities
    return [(n.pitch, int(n.start_s), int(n.end_s)) for n in melody_to_notes(case.events, step_s=1.0)]


def ngram_pieces(spec, sources: list[str], cases: list[Case], outputs: int, order: int,
                 seed: int) -> list[list]:
    """Per case, `outputs` n-gram continuations as pieces."""
    from _ngram_sampler import fit, sample
    from mtools.models.encoding import melody_ids_to_events
    from mtools.models.events import transpose_melody

    model = fit(spec, sources, order)
    primers = [case.ids[:PRIMER_BARS * case.steps_per_bar] for case in cases for _ in range(outputs)]
    longest = max(NEW_BARS * case.steps_per_bar for case in cases)
    rows = sample(model, primers, longest, np.random.default_rng(seed))
    out = []
    for index, case in enumerate(cases):
        pieces = []
        for row in rows[index * outputs:(index + 1) * outputs]:
            ids = row[:(PRIMER_BARS + NEW_BARS) * case.steps_per_bar]
            if case.velocities is not None:
                pieces.append((ids, None))
                continue
            events = transpose_melody(melody_ids_to_events(ids, int(spec.card_encoding["min_note"])),
                                      -case.shift, 0, 128)
            pieces.append([(n.pitch, int(n.start_s), int(n.end_s))
                           for n in melody_to_notes(events, step_s=1.0)])
        out.append(pieces)
    return out


def piece_stats(case: Case, piece) -> tuple[dict, np.ndarray | None]:
    start = PRIMER_BARS * case.steps_per_bar
    end = start + NEW_BARS * case.steps_per_bar
    if case.velocities is not None:
        return drum_stats(piece[0], piece[1], start, end, case.steps_per_bar), None
    return melody_stats(piece, start, end, case.steps_per_bar, case.key)


def side_summary(cases: list[Case], pieces_per_case: list[list]) -> tuple[dict, list, int]:
    """(summary per statistic, interval arrays, pieces) of one side."""
    stats, intervals = [], []
    for case, pieces in zip(cases, pieces_per_case):
        for piece in pieces:
            values, steps = piece_stats(case, piece)
            stats.append(values)
            if steps is not None:
                intervals.append(steps)
    return summarize(stats), intervals, len(stats)


# --- report ---------------------------------------------------------------------------


def model_table(sides: dict[str, tuple], ngram_order: int | None) -> list[str]:
    data, data_intervals, count = sides["data"]
    model, model_intervals, made = sides["model"]
    has_ngram = "ngram" in sides
    head = f"| statistic (mean ± SD over pieces) | data: {count} validation pieces | " \
           f"model: {made} continuations | close? |"
    rule = "|---|---|---|---|"
    if has_ngram:
        head += f" n-gram (order {ngram_order}): {sides['ngram'][2]} continuations | close? |"
        rule += "---|---|"
    lines = [head, rule]
    for name, stat in data.items():
        row = f"| {name} | {cell(stat)} | {cell(model[name])} | {close_cell(stat, model[name])} |"
        if has_ngram:
            other = sides["ngram"][0][name]
            row += f" {cell(other)} | {close_cell(stat, other)} |"
        lines.append(row)
    if data_intervals:
        lines.append(interval_row(data_intervals, model_intervals,
                                  sides["ngram"][1] if has_ngram else None))
        if "teacher_forced" in sides:
            lines.append(teacher_forced_row(data_intervals, sides["teacher_forced"])
                         + (" — | — |" if has_ngram else ""))
    return lines


def teacher_forced_row(data: list, expected: np.ndarray) -> str:
    """The model's own next-note probabilities on the real pieces, as an
    interval histogram: close while the sampled one is far means the gap
    comes from sampling its own output (exposure bias); far means the
    network itself."""
    distance = total_variation(expected, interval_histogram(data))
    return (f"| successive pitch intervals, teacher-forced (the model's next-note "
            f"probabilities on the real new bars): TV distance | 0 | {distance:.3f} | "
            f"{'yes' if distance <= TV_CLOSE else 'NO'} (≤ {TV_CLOSE}) |")


def teacher_forced_intervals(ref, cases: list[Case]) -> np.ndarray:
    """At every step of each case's new bars that follows a note starting
    in them, the model (fed the real steps so far) gives each pitch a
    probability of starting next: those probabilities as intervals from
    the last note, summed over steps and pieces, normalised (the same bins
    as interval_histogram)."""
    from _music_stats import INTERVAL_CLIP

    from mtools.models.sequence import EventRnn, _class_events, scoring_terms

    model = EventRnn.from_ref(ref, device="cpu")  # event ids: 0 hold, 1 off, 2.. pitches
    total = np.zeros(2 * INTERVAL_CLIP + 1)
    for case in cases:
        ids = np.asarray(case.ids, dtype=np.int64)
        controls = None if case.control is None else [case.control]
        terms = next(scoring_terms(model, [ids], controls))  # the card's repeat bias included
        probs = np.exp(terms.log_probs(model.repeat_bias))
        events = _class_events(model.encoding, ids)  # (steps - 1, classes): what each decodes to
        start, end = PRIMER_BARS * case.steps_per_bar, (PRIMER_BARS + NEW_BARS) * case.steps_per_bar
        last = None
        for t in range(start, end - 1):  # probs[t] is for step t + 1
            if ids[t] >= 2:
                last = ids[t]
            if last is None:
                continue
            onset = events[t] >= 2
            steps = np.clip(events[t][onset] - last, -INTERVAL_CLIP, INTERVAL_CLIP)
            np.add.at(total, steps + INTERVAL_CLIP, probs[t][onset])
    return total / max(total.sum(), 1e-12)


def interval_row(data: list, model: list, ngram: list | None) -> str:
    """TV distance of the interval histograms, with the data's own split-half
    distance as the floor that sampling alone gives."""
    reference = interval_histogram(data)
    floor = total_variation(interval_histogram(data[0::2]), interval_histogram(data[1::2]))

    def tv(intervals):
        distance = total_variation(interval_histogram(intervals), reference)
        return f"{distance:.3f} | {'yes' if distance <= TV_CLOSE else 'NO'} (≤ {TV_CLOSE}) |"

    row = f"| successive pitch intervals: TV distance to the data's histogram | " \
          f"0 (odd vs even pieces: {floor:.3f}) | {tv(model)}"
    return row + (f" {tv(ngram)}" if ngram is not None else "")


def main() -> None:
    args = parse_args()
    command = shlex.join([os.path.relpath(sys.executable, ROOT),
                          "benchmarks/bench_continue_stats.py", *sys.argv[1:]])
    refs = chosen_models(args.model, "bench_continue_stats")
    header = protocol()
    parts = ["\n".join(model_section(ref, args, command)) for ref in refs]
    print("\n\n".join([header, *parts]))
    if args.no_write:
        return
    write_section(SECTION, header)
    for ref, part in zip(refs, parts):
        # A candidate file's part would pose as the shipped model's.
        if ref.onnx_path.parent.resolve() != BUNDLED_DIR.resolve():
            print(f"bench_continue_stats: {ref.onnx_path} is not bundled; its part is "
                  "printed above, not written", file=sys.stderr)
            continue
        write_section(f"{SECTION}:{model_id(ref)}", part, after=SECTION)
        print(f"bench_continue_stats: wrote the part of {model_id(ref)} in "
              "benchmarks/results.md", file=sys.stderr)


def protocol() -> str:
    """The section's own text: what every model's part measures."""
    return "\n".join([
        "## `mtools continue`: musical statistics of the output vs the validation data",
        "", "Written by `benchmarks/bench_continue_stats.py`, one part per model below (a "
        "run rewrites the parts of the models it measured; each part says when and how).", "",
        f"Each validation piece (a bar-aligned line of the model's own training corpus, "
        f"validation split, in a meter of {'/'.join(map(str, BAR_STEPS))} steps a bar) gives a "
        f"{PRIMER_BARS}-bar primer and its real next {NEW_BARS} bars; the model continues each "
        "primer --outputs times in one batch (seed = 1 + piece index, at the temperature each "
        "table names); the n-gram samples the same way. Statistics look at the new 8 bars; "
        "repetition compares them with everything before them, primer included. close?: the "
        "model's mean lies within 0.5 SD of the data's pieces (d = |Δ| / SD; a statistic the "
        f"data never varies must match); interval histograms: TV distance ≤ {TV_CLOSE}. "
        "The teacher-forced interval row sums the model's probabilities of each next pitch "
        "at every step of the real new bars after their first note (the real steps fed), "
        "as intervals from the last note."])


def model_section(ref, args, command: str) -> list[str]:
    """One model's part: its heading, the run (machine and command, as it
    ended) and the model, and its tables."""
    from mtools.training import corpora

    spec = model_spec(ref)
    sources = data_sources(ref, spec, args.data)
    family = ref.card.name
    print(f"bench_continue_stats: {model_id(ref)}: loading {', '.join(sources)}", file=sys.stderr)
    items = [item for source in sources for item in spec.load(source)]
    picked = pick_items(corpora.split(items, "valid"), args.pieces)
    cases = [make_case(family, ref.card.encoding, item) for item in picked]
    print(f"bench_continue_stats: {model_id(ref)}: {len(cases)} primers", file=sys.stderr)
    data = side_summary(cases, [[data_piece(c)] for c in cases])
    sweep = []
    temperature = args.temperature
    if args.choose_temperature:
        tried = [float(t) for t in args.choose_temperature.split(",") if t.strip()]
        for t in tried:
            far = far_statistics(data, model_side(ref, cases, args.outputs, t))
            print(f"bench_continue_stats: {model_id(ref)}: temperature {t}: "
                  f"{len(far)} statistics far from the data's", file=sys.stderr)
            sweep.append((t, far))
        temperature = min(sweep, key=lambda tf: (len(tf[1]), abs(tf[0] - 1.0)))[0]
        write_temperature(ref, temperature, sweep, args)
    elif temperature is None:
        from mtools.models.continuation import model_temperature

        temperature = model_temperature(ref.card)
    sides = {"data": data, "model": model_side(ref, cases, args.outputs, temperature)}
    if family != "drums_rnn":
        sides["teacher_forced"] = teacher_forced_intervals(ref, cases)
    order = int(ref.card.metrics.get("ngram_order") or DEFAULT_NGRAM_ORDER)
    if not args.no_ngram:
        print(f"bench_continue_stats: {model_id(ref)}: n-gram", file=sys.stderr)
        sides["ngram"] = side_summary(cases, ngram_pieces(spec, sources, cases, args.outputs,
                                                          order, 1))
    meters = sorted({f"{c.steps_per_bar} steps" for c in cases})
    notes = [f"### `{model_id(ref)}`", "",
             machine_info(["mtools", "onnxruntime", "numpy"], command), describe_model(ref), "",
             f"Data: {', '.join(sources)}, validation split; {len(cases)} pieces "
             f"(bars of {', '.join(meters)}); {args.outputs} continuations of each.",
             *(["Drum velocities of new hits come from the card's velocity table (median per "
                "class and 16th, scaled to the primer, varied as much as a drummer varies one "
                "cell: the card's velocity_spread), not from the network; the n-gram has "
                "none."] if family == "drums_rnn" else []),
             *(["The n-gram ignores the chords."] if family == "improv_rnn" else []),
             f"Temperature {temperature:g}"
             + (" (the card's)." if args.temperature is None and not sweep else "."), ""]
    if sweep:
        notes += ["Temperatures tried (`--choose-temperature`; the one kept is now the card's "
                  "default; chosen on these same validation pieces):", "",
                  "| temperature | statistics far from the data's |", "|---|---|",
                  *(f"| {t:g}{' (kept)' if t == temperature else ''} | {len(far)}"
                    f"{': ' + '; '.join(far) if far else ''} |" for t, far in sweep), ""]
    return notes + model_table(sides, None if args.no_ngram else order)


def model_side(ref, cases: list[Case], outputs: int, temperature: float) -> tuple:
    return side_summary(cases, [model_pieces(ref, c, outputs, 1 + i, temperature)
                                for i, c in enumerate(cases)])


def far_statistics(data: tuple, model: tuple) -> list[str]:
    """The statistics whose "close?" cell says NO (the table's rule)."""
    far = [name for name, stat in data[0].items()
           if close_cell(stat, model[0][name]).startswith("NO")]
    if data[1]:
        distance = total_variation(interval_histogram(model[1]), interval_histogram(data[1]))
        if distance > TV_CLOSE:
            far.append("successive pitch intervals")
    return far


def write_temperature(ref, temperature: float, sweep: list, args) -> None:
    """The card's `encoding.sampling`: the default temperature and how it was chosen."""
    from mtools.models.registry import write_card

    tried = ", ".join(f"{t:g}: {len(far)}" for t, far in sweep)
    sampling = {
        "temperature": temperature,
        "chosen_by": f"benchmarks/bench_continue_stats.py --choose-temperature "
                     f"{args.choose_temperature} --pieces {args.pieces} --outputs {args.outputs}: "
                     f"fewest statistics far from the validation pieces' ({tried})"}
    card = ref.card.to_dict()
    write_card({**card, "encoding": {**card["encoding"], "sampling": sampling}}, ref.onnx_path)
    print(f"bench_continue_stats: {model_id(ref)}: temperature {temperature:g} written to "
          f"{ref.card.card_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
