"""`mtools interpolate`: morph between two inputs through a MusicVAE's
latent space, or decode draws from its prior."""

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt

HELP = """Morph from A to B through a MusicVAE's latent space, or sample it.

Takes a window of each input as long as the model's (2 bars, or 16 for
mel_16bar and trio_16bar): the top line for melody models, the drum hits
for drum models, all three for trios (the General MIDI bass track, else the
lowest pitched track, is the bass; the top line of the other pitched tracks
the melody), from the first bar with a note (or the bar --window names). Both windows
are encoded: the encoder's posterior mean, then --fit-rounds rounds of
search near it for a latent vector whose decoding matches the window
better, so the path starts at A and ends at B more exactly. The path
between them on the sphere is cut into --steps points (A and B included),
and each point is decoded: the two ends greedily (they are A's and B's
reconstructions), the points between at --temperature. MIDI output is one
sequence of the points back to back (--concat); --no-concat gives one
output per point (-o DIR/, or JSONL lines). --sample N decodes N draws from the prior instead;
--emit-latents writes the latent vectors as JSONL, for arithmetic on them.

Models: music_vae:mel_2bar (default), music_vae:drums_2bar, music_vae:mel_16bar
(16 bars), music_vae:trio_16bar (16 bars of melody, bass and drums), and
trio_16bar's parts music_vae:bass_2bar (reads the bass line) and
music_vae:trio_drums_2bar.

Examples:

\b
  mtools interpolate a.mid b.mid --steps 5 > morph.mid
  mtools interpolate a.mid b.mid --no-concat -o morph/
  mtools interpolate beat1.mid beat2.mid --model music_vae:drums_2bar --temperature 0 > fill.mid
  mtools interpolate tune1.mid tune2.mid --model music_vae:mel_16bar --steps 3 > medley.mid
  mtools interpolate band1.mid band2.mid --model music_vae:trio_16bar --steps 3 > jam.mid
  mtools interpolate --sample 4 --seed 3 --no-concat -o samples/
  mtools interpolate a.mid b.mid --emit-latents | jq '.z | length'
  mtools interpolate long_tune.mid other.mid --window 5,1 > morph.mid
  mtools interpolate a.mid b.mid --fit-rounds 0 > morph.mid   # posterior means, as Magenta
"""


def interpolate(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        metavar="A B", show_default=False,
        help="Two files (or one JSONL file or stdin holding two scores).")] = None,
    output: opt.Output = None,
    model: opt.Model = "music_vae",
    steps: Annotated[Optional[int], typer.Option(
        "--steps", min=2, max=opt.MAX_OUTPUTS, metavar="N",
        help="Points from A to B, both ends included (default 8).")] = None,
    sample: Annotated[Optional[int], typer.Option(
        "--sample", min=1, max=opt.MAX_OUTPUTS, metavar="N",
        help="Decode N draws from the prior instead (no inputs).")] = None,
    window: Annotated[Optional[str], typer.Option(
        "--window", metavar="BAR[,BAR]",
        help="The bar the windows start at, or A's and B's (default: each one's first bar "
             "with a note).")] = None,
    concat: Annotated[Optional[bool], typer.Option(
        "--concat/--no-concat", show_default=False,
        help="One sequence of every point back to back (default for MIDI/WAV), or one output "
             "per point (default for JSONL).")] = None,
    emit_latents: Annotated[bool, typer.Option(
        "--emit-latents", help="Write the latent vectors (JSONL, one per point) instead of music.")] = False,
    fit_rounds: Annotated[Optional[int], typer.Option(
        "--fit-rounds", min=0, max=20, metavar="N",
        help="Rounds of search for latent vectors that reproduce A and B, 16 greedy decodings "
             "of each a round (default 3; 0: the posterior means, faster, as Magenta).")] = None,
    temperature: opt.Temperature = 0.5,
    seed: opt.Seed = None,
    program: Annotated[Optional[int], typer.Option(
        "--program", min=0, max=127, metavar="N",
        help="General MIDI program of melody output (default 0, piano; a bass line model's "
             "33, electric bass).")] = None,
    from_: opt.ScoreFrom = None,
    to: opt.To = None,
    device: opt.DeviceOpt = None,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    import json

    from mtools.commands._batch import InputGuard, say, score_batch, score_inputs
    from mtools.errors import UsageError
    from mtools.io.formats import encode_outputs
    from mtools.io.streams import OutputPlan, check_binary_stdout
    from mtools.models import interpolation as lib

    if emit_latents and to is not None and to.value != "jsonl":
        raise UsageError("--emit-latents writes JSONL", hint=f"drop --to {to.value}")
    named = OutputPlan.from_option(output).extension_format()
    if emit_latents and named not in (None, "jsonl"):
        raise UsageError(f"--emit-latents writes JSONL, not into {output}",
                         hint="name a .jsonl file")
    settings = score_batch(output, "jsonl" if emit_latents else (to.value if to else None),
                           jobs=1, skip_existing=False, quiet=quiet, progress=False)
    if sample is not None and window is not None:
        raise UsageError("--window picks the inputs' bars; --sample takes no inputs")
    if sample is not None and steps is not None:
        raise UsageError("--steps counts the points from A to B; --sample N decodes N draws")
    if sample is not None and fit_rounds is not None:
        raise UsageError("--fit-rounds fits latent vectors to A and B; --sample takes no inputs")
    if settings.plan.mode == "stdout":
        check_binary_stdout(settings.binary)
    guard = InputGuard(score_inputs(inputs) if inputs else [])
    guard.check(settings.plan.path if settings.plan.mode == "file" else None)
    bars = _window_bars(window)
    options = lib.InterpolateOptions(
        model=model, steps=8 if steps is None else steps, temperature=temperature, seed=seed,
        concat=settings.single_per_file if concat is None else concat,
        program=0 if program is None else program, device=device.value if device else None,
        fit_rounds=lib.FIT_ROUNDS if fit_rounds is None else fit_rounds)
    space = lib.load(options.model, options.device)[0].space
    if program is not None and space.kind in DRUM_KINDS:
        raise UsageError("--program sets the instrument of melodies; drums play on channel 10")
    if program is None and space.line == "bass":
        options = replace(options, program=lib.TRIO_BASS_PROGRAM)
    warnings: list[str] = []
    if sample is not None:
        if inputs:
            raise UsageError("--sample draws from the prior and takes no inputs")
        result, name = lib.sample(sample, options), "sample"
    else:
        windows = []
        found = _two_scores(inputs, from_.value if from_ else None)
        for (score, label), bar in zip(found, bars):
            taken, notes = lib.take_window(score, space, label, bar)
            windows.append(taken)
            warnings.extend(notes)
        result, name = lib.interpolate(windows[0], windows[1], options), "interpolation"
    if emit_latents:
        outputs = ["".join(json.dumps(row) + "\n" for row in result.latents).encode()]
    else:
        outputs = encode_outputs(result.scores, settings.format)
    if not quiet:
        for warning in warnings + result.warnings:
            say(f"warning: {warning}")
    _write(outputs, settings, name, guard)


DRUM_KINDS = ("drums", "groove")  # spaces whose output has no melody for --program


def _window_bars(text: str | None) -> tuple[int | None, int | None]:
    """--window "5" (both inputs) or "5,1" (A's, B's) → bars, 1-based."""
    from mtools.errors import UsageError

    if text is None:
        return None, None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise UsageError(f"--window {text!r}: give a bar number from 1, or two as A,B")
    bars = [int(p) for p in parts]
    return (bars[0], bars[-1])


def _two_scores(args: list[str] | None, in_format: str | None):
    """(score, label) of the two inputs: two files, or one input holding two scores."""
    from mtools.commands._batch import score_inputs
    from mtools.errors import UsageError
    from mtools.io.formats import detect_format, read_scores

    found = []
    sources = score_inputs(args)
    if sum(source.is_stdin for source in sources) > 1:
        raise UsageError("standard input can be read once",
                         hint="pipe both scores as two JSONL lines into one -")
    for source in sources:
        data = source.read_bytes()
        scores = read_scores(data, detect_format(data, in_format, source.name), source.name)
        labels = [source.name] if len(scores) == 1 else \
            [f"{source.name} (score {i + 1})" for i in range(len(scores))]
        found.extend(zip(scores, labels))
    if len(found) != 2:
        raise UsageError(f"interpolate takes two scores (A and B), got {len(found)}",
                         hint="name two files, or use --sample N to draw from the prior")
    return found


def _write(outputs: list[bytes], settings, name: str, guard) -> None:
    from mtools.errors import UsageError
    from mtools.io.streams import Input, atomic_write, write_stdout

    plan = settings.plan
    if plan.mode == "dir":
        source = Input(name, None, Path(f"{name}.{settings.extension}"))
        targets = [plan.target(source, settings.extension, index, len(outputs))
                   for index in range(len(outputs))]
        for target in targets:
            guard.check(target)  # an input named like an output, in the output folder
        for target, data in zip(targets, outputs):
            atomic_write(target, data)
        return
    if len(outputs) > 1:
        where = "stdout" if plan.mode == "stdout" else f"-o {plan.path}"
        raise UsageError(f"{len(outputs)} outputs cannot all go to {where} as one "
                         f".{settings.extension} file", hint="use -o DIR/, --concat or --to jsonl")
    if plan.mode == "file":
        atomic_write(plan.path, outputs[0])
    else:
        write_stdout(outputs[0])


interpolate.__doc__ = HELP
