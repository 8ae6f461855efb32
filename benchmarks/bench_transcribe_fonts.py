"""Where a transcription model's errors come from: the held-out timbre, or
the network itself. Note figures of each model on the same performances
rendered clean with every piano soundfont, the held-out ones (TimGM6mb
and the recorded SalamanderGrandPianoV3) and those training used, and on
performances the model trained on.

    .venv/bin/python benchmarks/bench_transcribe_fonts.py \\
        [--models onsets_frames onsets_frames:wide] [--pieces 12]

- held-out pieces: the --pieces performances the card's figures come from
  (`renders.valid_pieces`: pieces neither training nor any choice saw),
  each rendered with program 0 of each soundfont in turn (the card's
  headline figures are the held-out soundfont's, its other_soundfonts the
  recorded piano's);
- trained-on pieces: the first --pieces of ASAP's training performances in
  the same order, rendered with each training soundfont. Training heard
  them with augmentation (reverb, EQ, noise, gain, detuning): these
  renders are clean.
Scored as the card is (`transcription_metrics.pieces_figures`: mean over
pieces of mir_eval's note F1, onsets within 50 ms; note with offset; note
with velocity; frame F1), at each model's own thresholds. Needs the piano
soundfonts (README, Transcription). Rewrites the `bench_transcribe_fonts`
section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from _results import machine_info, write_section

from mtools.models.onsets_frames import OnsetsFrames
from mtools.models.registry import resolve_model
from mtools.training import renders
from mtools.training.render_sources import PIANO, asap_performances
from mtools.training.transcription_metrics import pieces_figures

SECTION = "bench_transcribe_fonts"
FIGURES = ("note_f1", "note_offset_f1", "note_velocity_f1", "frame_f1")


def rendered_with(soundfont: str, count: int, trained_on: bool, valid_part=None) -> list:
    """`count` performances (held out, or trained on) rendered clean with
    program 0 of `soundfont`: valid_pieces' (name, score, audio) triples.
    `valid_part`: the card's (renders.card_valid_part), whose pieces the
    held-out ones avoid."""
    chosen = renders.choose_take
    renders.choose_take = lambda *args: dataclasses.replace(chosen(*args), soundfont=soundfont,
                                                            program=0)
    try:
        if trained_on:  # no training piece is in the valid part: nothing to skip
            return renders.valid_pieces(count, PIANO, sources=asap_performances("train"),
                                        valid_part={"takes": []})
        return renders.valid_pieces(count, PIANO, valid_part=valid_part)
    finally:
        renders.choose_take = chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["onsets_frames"])
    parser.add_argument("--pieces", type=int, default=12)
    args = parser.parse_args(argv)
    refs = {name: resolve_model(name) for name in args.models}
    nets = {name: OnsetsFrames.from_ref(ref, device="cpu") for name, ref in refs.items()}
    # held-out pieces avoid the valid part of the first model's card
    valid_part = renders.card_valid_part(refs[args.models[0]].card)
    cases = [(font, False) for font in (*PIANO.held_out(), *PIANO.train_soundfonts)]
    cases += [(font, True) for font in PIANO.train_soundfonts]
    lines = ["| pieces | soundfont | model | " + " | ".join(FIGURES) + " |",
             "|---|---|---|" + "---|" * len(FIGURES)]
    for font, trained_on in cases:
        pieces = rendered_with(font, args.pieces, trained_on, valid_part)
        for name, net in nets.items():
            figures = pieces_figures(net, pieces)
            role = "held out" if font in PIANO.held_out() else "trained on"
            lines.append(f"| {'trained on' if trained_on else 'held out'} | {font} ({role}) | "
                         f"`{name}` | " + " | ".join(f"{figures[k]:.3f}" for k in FIGURES) + " |")
            print(lines[-1], file=sys.stderr, flush=True)
    command = "benchmarks/bench_transcribe_fonts.py " + shlex.join(argv or sys.argv[1:])
    body = "\n".join([
        "## transcribe: held-out timbre or the network? Note figures by soundfont",
        "",
        machine_info(["onnxruntime"], command.strip()),
        "",
        f"{args.pieces} performances per row, rendered clean with program 0 of the soundfont "
        "(see the script's docstring); held-out pieces are the card's.",
        "",
        *lines,
    ])
    write_section(SECTION, body)


if __name__ == "__main__":
    main()
