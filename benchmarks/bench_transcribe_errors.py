"""Which notes a transcription model gets wrong: recall and precision by
register, missed and extra notes sorted by what lies near them, and the
timing of the notes it finds. The card's figures say how much is wrong;
this says where to look next.

    .venv/bin/python benchmarks/bench_transcribe_errors.py \\
        [--models onsets_frames] [--pieces 12] [--selection]

Pieces: the card's held-out performances (`renders.valid_pieces`, the
held-out soundfont, clean), or with --selection the performances the
decoding thresholds were chosen on (tune decoding on those, not on the
card's). Each note is matched as the card's note F1 matches it
(mir_eval.transcription.match_notes, onsets within 50 ms, pitches equal,
offsets ignored), at each model's own thresholds. An unmatched note is put
in the first kind that fits (see ERROR_KINDS); "sounding" means inside a
reference note of the same key as the sustain pedal lengthens it. Rewrites
the `bench_transcribe_errors` section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter

import numpy as np
from _results import machine_info, write_section

from mtools.models.onsets_frames import OnsetsFrames
from mtools.models.registry import resolve_model
from mtools.models.transcription import HARMONIC_INTERVALS
from mtools.score import apply_sustain
from mtools.training import renders
from mtools.training.render_sources import PIANO
from mtools.training.transcription_metrics import (ONSET_TOLERANCE_S, note_arrays,
                                                   transcribe_samples)

SECTION = "bench_transcribe_errors"
REGISTERS = ((21, 32), (33, 44), (45, 56), (57, 68), (69, 80), (81, 92), (93, 108))
VELOCITIES = ((1, 39), (40, 79), (80, 127))
NEAR_S = 0.1  # a same-key note this close (past the tolerance) is a timing error
GHOST_S = 0.3  # a repeat this soon after a sounding note's onset is "soon"
TOLERANCE_MS, NEAR_MS = round(1000 * ONSET_TOLERANCE_S), round(1000 * NEAR_S)
ERROR_KINDS = {
    "extra": (f"a reference onset of the same key within {TOLERANCE_MS} ms, already found "
              "(a second onset)",
              f"a reference onset of the same key {TOLERANCE_MS}-{NEAR_MS} ms away (timing)",
              f"inside a sounding reference note of that key, under {GHOST_S:g} s after its onset",
              f"inside a sounding reference note of that key, {GHOST_S:g} s or more after its onset",
              f"an octave, twelfth or two octaves from a reference onset within {TOLERANCE_MS} "
              "ms (a harmonic or subharmonic)",
              "none of these"),
    "missed": (f"an estimate of the same key within {TOLERANCE_MS} ms, matched to another "
               "reference note",
               f"an estimate of the same key {TOLERANCE_MS}-{NEAR_MS} ms away (timing)",
               "a restrike: its key still sounding from an earlier reference note",
               "none of these"),
}


def match(reference, estimate, net):
    """(ref onsets, ref keys, ref velocities, ref ends, est onsets, est keys,
    matched (ref index, est index) pairs), as the card's note F1 matches."""
    import mir_eval

    ref_i, ref_hz, ref_v = note_arrays(apply_sustain(reference).notes, net)
    est_i, est_hz, _ = note_arrays(estimate.notes, net)
    pairs = mir_eval.transcription.match_notes(ref_i, ref_hz, est_i, est_hz,
                                               onset_tolerance=ONSET_TOLERANCE_S,
                                               offset_ratio=None)
    key = lambda hz: np.rint(69 + 12 * np.log2(hz / 440.0)).astype(int)  # noqa: E731
    return ref_i[:, 0], key(ref_hz), ref_v, ref_i[:, 1], est_i[:, 0], key(est_hz), pairs


def extra_kind(onset, key, ref_on, ref_key, ref_end) -> int:
    """The index in ERROR_KINDS["extra"] of an unmatched estimate."""
    same = ref_key == key
    gap = np.abs(ref_on[same] - onset).min(initial=np.inf)
    if gap <= ONSET_TOLERANCE_S:  # matching is one to one: that reference note has its own
        return 0
    if gap < NEAR_S:
        return 1
    sounding = same & (ref_on < onset) & (ref_end > onset)
    if sounding.any():
        return 2 if onset - ref_on[sounding].max() < GHOST_S else 3
    harmonic = np.isin(np.abs(ref_key - key), HARMONIC_INTERVALS)
    if (harmonic & (np.abs(ref_on - onset) < ONSET_TOLERANCE_S)).any():
        return 4
    return 5


def missed_kind(index, ref_on, ref_key, ref_end, est_on, est_key) -> int:
    """The index in ERROR_KINDS["missed"] of an unmatched reference note."""
    onset, key = ref_on[index], ref_key[index]
    gap = np.abs(est_on[est_key == key] - onset).min(initial=np.inf)
    if gap <= ONSET_TOLERANCE_S:
        return 0
    if gap < NEAR_S:
        return 1
    earlier = (ref_key == key) & (ref_on < onset) & (ref_end >= onset)
    return 2 if earlier.any() else 3


def tally(net: OnsetsFrames, pieces) -> dict:
    """Counts over the pieces: by register and velocity, error kinds, and
    the onset offsets (s) of matched notes."""
    counts = {name: Counter() for name in ("ref", "hit", "est", "true", "vref", "vhit",
                                           "extra", "missed")}
    offsets = []
    for _, reference, samples in pieces:
        ref_on, ref_key, ref_v, ref_end, est_on, est_key, pairs = match(
            reference, transcribe_samples(net, samples), net)
        hit_ref = {r for r, _ in pairs}
        hit_est = {e for _, e in pairs}
        offsets += [est_on[e] - ref_on[r] for r, e in pairs]
        for index, key in enumerate(ref_key):
            band = register(key)
            counts["ref"][band] += 1
            counts["hit"][band] += index in hit_ref
            level = next(i for i, (lo, hi) in enumerate(VELOCITIES)
                         if lo <= max(ref_v[index], 1) <= hi)
            counts["vref"][level] += 1
            counts["vhit"][level] += index in hit_ref
            if index not in hit_ref:
                counts["missed"][missed_kind(index, ref_on, ref_key, ref_end, est_on, est_key)] += 1
        for index, key in enumerate(est_key):
            band = register(key)
            counts["est"][band] += 1
            counts["true"][band] += index in hit_est
            if index not in hit_est:
                counts["extra"][extra_kind(est_on[index], key, ref_on, ref_key, ref_end)] += 1
    return {**counts, "offsets": np.array(offsets)}


def register(key: int) -> int:
    """The index in REGISTERS of a MIDI key."""
    return next(i for i, (lo, hi) in enumerate(REGISTERS) if lo <= key <= hi)


def share(part: int, whole: int) -> str:
    """part / whole to three places, or a dash for nothing to divide."""
    return f"{part / whole:.3f}" if whole else "—"


def tables(results: dict[str, dict]) -> list[str]:
    names = list(results)
    head = "| " + " | ".join(f"`{n}`" for n in names) + " |"
    lines = ["Recall (reference notes found) and precision (estimates that are right) by "
             "register, MIDI keys:", "",
             "| keys | reference notes | " + " | ".join(
                 f"recall `{n}` | estimates `{n}` | precision `{n}`" for n in names) + " |",
             "|---|---|" + "---|---|---|" * len(names)]
    first = results[names[0]]
    for band, (lo, hi) in enumerate(REGISTERS):
        cells = [f"{share(r['hit'][band], r['ref'][band])} | {r['est'][band]} | "
                 f"{share(r['true'][band], r['est'][band])}" for r in results.values()]
        lines.append(f"| {lo}-{hi} | {first['ref'][band]} | " + " | ".join(cells) + " |")
    lines += ["", "Recall by the reference note's velocity:", "",
              "| velocity | reference notes | " + " | ".join(f"recall `{n}`" for n in names)
              + " |", "|---|---|" + "---|" * len(names)]
    for level, (lo, hi) in enumerate(VELOCITIES):
        lines.append(f"| {lo}-{hi} | {first['vref'][level]} | " + " | ".join(
            share(r["vhit"][level], r["vref"][level]) for r in results.values()) + " |")
    for what, title in (("extra", "Extra notes (estimates matching no reference note), by what "
                                  "lies near them"),
                        ("missed", "Missed notes (reference notes no estimate matches), by what "
                                   "lies near them")):
        lines += ["", f"{title}:", "", "| near it | " + head[2:], "|---|" + "---|" * len(names)]
        for kind, label in enumerate(ERROR_KINDS[what]):
            lines.append(f"| {label} | " + " | ".join(
                f"{r[what][kind]} ({share(r[what][kind], sum(r[what].values()))})"
                for r in results.values()) + " |")
    lines += ["", "Onset timing of the notes found (estimate minus reference, ms):", "",
              "| model | notes | median | 10th percentile | 90th percentile |",
              "|---|---|---|---|---|"]
    for name, r in results.items():
        ms = 1000.0 * r["offsets"]
        lines.append(f"| `{name}` | {len(ms)} | {np.median(ms):.1f} | "
                     f"{np.percentile(ms, 10):.1f} | {np.percentile(ms, 90):.1f} |")
    return lines


def labelled(spec: str) -> tuple[str, str]:
    """LABEL=MODEL → (LABEL, MODEL); MODEL alone is its own label."""
    label, sep, ref = spec.partition("=")
    return (label, ref) if sep else (spec, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["onsets_frames"],
                        help="model names or paths, each optionally LABEL=MODEL")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--selection", action="store_true",
                        help="the performances the thresholds were chosen on")
    args = parser.parse_args(argv)
    refs = {label: resolve_model(ref) for label, ref in map(labelled, args.models)}
    nets = {label: OnsetsFrames.from_ref(ref, device="cpu") for label, ref in refs.items()}
    # the held-out performances of the first model's card (its valid part is
    # what it chose on)
    first = next(iter(refs.values()))
    pieces = renders.valid_pieces(args.pieces, PIANO, selection=args.selection,
                                  valid_part=renders.card_valid_part(first.card))
    results = {name: tally(net, pieces) for name, net in nets.items()}
    command = "benchmarks/bench_transcribe_errors.py " + shlex.join(argv or sys.argv[1:])
    which = ("the performances the decoding thresholds were chosen on" if args.selection
             else "the card's held-out performances")
    body = "\n".join([
        "## transcribe: which notes are wrong",
        "",
        machine_info(["onnxruntime"], command.strip()),
        "",
        f"{len(pieces)} performances: {which}, rendered clean with the held-out soundfont "
        f"{PIANO.valid_soundfont}; each model at its own thresholds; matched as the card's "
        "note F1 (see the script's docstring).",
        "",
        *tables(results),
    ])
    print(body, file=sys.stderr)
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
