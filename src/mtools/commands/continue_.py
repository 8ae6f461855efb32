"""`mtools continue`: extend a primer (or start from nothing) with a
sequence model."""

import sys
from dataclasses import replace
from functools import partial
from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt
from mtools.commands._batch import run_batch, score_batch, score_inputs, score_job

HELP = """Continue a primer with a sequence model, or start from nothing.

Reads a primer (MIDI, JSONL, MusicXML/ABC, stdin, or --primer text), takes
the line the model plays (the top voice for melody models, the drum track
for drums_rnn), and writes the primer with its continuation. The primer's
other tracks are kept unless --only-generated. With no input and no pipe,
it starts from scratch.

Models: melody_rnn (configs attention_rnn, the default; lookback_rnn;
basic_rnn), drums_rnn (drum_kit, the default; attention_kit), improv_rnn
(attention_improv, the default; chord_pitches_improv). `mtools models`
shows each one's default temperature.

Examples:

\b
  mtools continue primer.mid --model melody_rnn --bars 8 > out.mid
  mtools continue --model melody_rnn:lookback_rnn --primer "60 _ 62 _ 64 _ 65 _" -n 4 -o takes/
  mtools convert tune.abc --to midi | mtools continue --temperature 0.8 | mtools convert --to wav > tune.wav
  mtools continue groove.mid --model drums_rnn --bars 4 --beam-size 2 --branch-factor 4 > more.mid
  mtools continue --model drums_rnn --primer "36+42 42 38+42 42 36+42 36 38+42 42" > beat.mid
  mtools continue --model improv_rnn --chords "Dm7 G7 Cmaj7 Cmaj7" --render-chords -o solo.mid
  mtools continue --model melody_rnn --seed 7 --num-outputs 8 --to jsonl | jq '.notes | length'
"""


def continue_(
    inputs: opt.Inputs = None,
    output: opt.Output = None,
    model: opt.Model = "melody_rnn",
    primer: Annotated[Optional[str], typer.Option(
        "--primer", metavar="TEXT",
        help='A primer melody as text instead of a file: MIDI pitches, "_" holds, '
             '"-" rests, one token per 16th note, e.g. "60 _ 62 - 64". For drums_rnn, '
             'drum pitches struck together joined by "+", e.g. "36+42 42 38+42 42".')] = None,
    bars: Annotated[Optional[float], typer.Option(
        "--bars", callback=opt.positive, metavar="N",
        help="Generate N bars after the primer, N > 0 (default 8; improv_rnn with --chords: "
             "one pass of the chords).")] = None,
    steps: Annotated[Optional[int], typer.Option(
        "--steps", min=1, metavar="N", help="Generate N steps (16th notes) after the primer.")] = None,
    seconds: Annotated[Optional[float], typer.Option(
        "--seconds", callback=opt.positive, metavar="S",
        help="Generate S seconds after the primer, S > 0.")] = None,
    temperature: Annotated[Optional[float], typer.Option(
        "--temperature", callback=opt.finite, min=0.0, metavar="T",
        help="Sampling temperature: lower is safer, higher wilder (default: the model's own, "
             "on its card: the one whose output statistics came closest to its validation "
             "data; 1 where the card names none).")] = None,
    beam_size: Annotated[int, typer.Option(
        "--beam-size", min=1, metavar="N", help="Beams kept in beam search (1: plain sampling).")] = 1,
    branch_factor: Annotated[int, typer.Option(
        "--branch-factor", min=1, metavar="N", help="Branches each beam grows per iteration.")] = 1,
    steps_per_iteration: Annotated[int, typer.Option(
        "--steps-per-iteration", min=1, metavar="N",
        help="Steps each branch samples before the beams are pruned.")] = 1,
    num_outputs: opt.NumOutputs = 1,
    seed: opt.Seed = None,
    qpm: Annotated[Optional[float], typer.Option(
        "--qpm", callback=opt.finite, min=1.0, metavar="BPM",
        help="Tempo in quarter notes per minute when the primer has none (its own wins).")] = None,
    key: Annotated[Optional[str], typer.Option(
        "--key", metavar="KEY",
        help="The primer's key (e.g. D, Bb, F#m) instead of estimating it from its notes.")] = None,
    program: Annotated[Optional[int], typer.Option(
        "--program", min=0, max=127, metavar="N",
        help="General MIDI program (0-127) of the generated notes (default: the primer's).")] = None,
    only_generated: Annotated[bool, typer.Option(
        "--only-generated", help="Write only the new notes, starting at time 0.")] = False,
    chords: Annotated[Optional[str], typer.Option(
        "--chords", metavar="CHORDS",
        help='improv_rnn: the chords to play over, e.g. "C G Am F" or "Dm7 G7 | Cmaj7" '
             "(one per bar unless --steps-per-chord). With no --bars, --steps or --seconds "
             "it plays them once; with one, it cycles them to fill the length.")] = None,
    steps_per_chord: Annotated[Optional[int], typer.Option(
        "--steps-per-chord", min=1, metavar="N",
        help="improv_rnn: 16th steps each chord lasts (default: one bar).")] = None,
    render_chords: Annotated[bool, typer.Option(
        "--render-chords", help="improv_rnn: add the chords as a block-chord track.")] = False,
    from_: opt.ScoreFrom = None,
    to: opt.To = None,
    device: opt.DeviceOpt = None,
    skip_existing: opt.SkipExisting = False,
    jobs: opt.Jobs = 1,
    quiet: opt.Quiet = False,
    progress: opt.Progress = None,
    debug: opt.Debug = False,
) -> None:
    from mtools.errors import UsageError
    from mtools.io.streams import primer_input, stdin_is_free
    from mtools.models.continuation import ContinueOptions, Length

    if sum(x is not None for x in (bars, steps, seconds)) > 1:
        raise UsageError("give one of --bars, --steps, --seconds")
    if key is not None:
        from mtools.models.melody_rnn import parse_key
        parse_key(key)  # a bad key is a usage error before any input is read
    settings = score_batch(output, to.value if to else None, jobs=jobs,
                           skip_existing=skip_existing, quiet=quiet, progress=progress,
                           takes=num_outputs)
    options = ContinueOptions(
        model=model, length=Length(bars=bars, steps=steps, seconds=seconds),
        temperature=temperature, beam_size=beam_size, branch_factor=branch_factor,
        steps_per_iteration=steps_per_iteration, num_outputs=num_outputs, seed=seed,
        qpm=qpm, key=key, program=program, only_generated=only_generated,
        device=device.value if device else None, chords=chords, steps_per_chord=steps_per_chord,
        render_chords=render_chords)
    from mtools.models.continuation import check_options
    ref = check_options(options)  # an unknown model or an unused option fails before any input
    if chords is not None:
        from mtools.models.improv_rnn import resolve_progression
        resolve_progression(chords, 1)  # unreadable chords fail before any input is read
    if primer is not None or (not inputs and stdin_is_free()):
        if inputs:
            raise UsageError("--primer replaces input files; give one or the other")
        sources = [primer_input(primer or "", qpm=qpm, drums=ref.card.name == "drums_rnn")]
        in_format = "jsonl"
    else:
        sources = score_inputs(inputs)
        in_format = from_.value if from_ else None
    report = None
    if len(sources) == 1 and opt.shows_progress(progress, quiet):
        # One input: a long generation says how far it is (a batch shows its bar of inputs).
        report = StepReport()
        options = replace(options, progress=report)
    from mtools.models.continuation import continue_score

    job = score_job(partial(continue_score, options=options), in_format, settings)
    try:
        code = run_batch(sources, job, settings)
    finally:
        if report is not None:
            report.close()  # an error or Ctrl-C starts its own line
    if code:
        raise typer.Exit(code)


class StepReport:
    """progress(done, total) for one long generation: a line on stderr,
    rewritten in place at most every `every_s`, once it has run `after_s`
    (a short one shows nothing), ended when the last step is done."""

    def __init__(self, after_s: float = 1.0, every_s: float = 0.25):
        self.after_s, self.every_s = after_s, every_s
        self.started = self.shown = None
        self.open = False

    def __call__(self, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        self.started = self.started or now
        last = done >= total
        if (self.shown is None and now - self.started < self.after_s) or \
                (self.shown is not None and now - self.shown < self.every_s and not last):
            return
        if self.shown is None and last:
            return  # finished before its first line was due
        self.shown, self.open = now, not last
        print(f"\rmtools continue: {done} of {total} steps", end="\n" if last else "",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        """End a line left open (the generation stopped before its last step)."""
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


continue_.__doc__ = HELP
