"""`mtools infill`: regenerate a region of a four-part score."""

from functools import partial
from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt
from mtools.commands._batch import run_batch, score_batch, score_inputs, score_job
from mtools.commands.harmonize import (ITERATIONS, AllowParallels, AllowWideRanges,
                                       Iterations, Sampler, sampling_options)

HELP = """Regenerate part of a four-part score: a span of bars or seconds,
some voices, or both.

The input needs four parts (tracks), taken as soprano, alto, tenor and bass
from the highest down. Inside the region, the chosen voices are written
anew; every note outside it is kept exactly as it was (a note that crosses
the region's edge keeps its part outside). Bars are counted from 1; --end
is where the region stops, so --start 5 --end 9 rewrites bars 5 to 8.

Models: coconet (default).

Examples:

\b
  mtools infill chorale.mid --start 5 --end 9 > new.mid
  mtools infill chorale.mid --voices alto,tenor > new-inner-voices.mid
  mtools infill chorale.mid --start 12.5s --end 20s --voices bass -n 3 -o takes/
  mtools harmonize melody.mid | mtools infill --voices bass --seed 2 > rebassed.mid
  mtools infill chorale.mid --voices alto --allow-parallels > freer-alto.mid
"""


def infill(
    inputs: opt.Inputs = None,
    output: opt.Output = None,
    model: opt.Model = "coconet",
    start: Annotated[Optional[str], typer.Option(
        "--start", metavar="POS", help='Where the region starts: a bar ("5") or seconds ("12.5s"). '
                                       "Without --end: from here to the end. Give --start/--end, --voices, or both.")] = None,
    end: Annotated[Optional[str], typer.Option(
        "--end", metavar="POS", help='Where the region stops: a bar ("9") or seconds ("20s"). '
                                     "Without --start: from the beginning.")] = None,
    voices: Annotated[Optional[str], typer.Option(
        "--voices", metavar="LIST",
        help='The voices to regenerate, e.g. "alto,tenor" or "2,3" (1 = soprano). '
             "Without --voices: all four, in the region.")] = None,
    temperature: opt.Temperature = 0.5,
    iterations: Iterations = ITERATIONS,
    sampler: Sampler = "gibbs",
    allow_parallels: AllowParallels = False,
    allow_wide_ranges: AllowWideRanges = False,
    num_outputs: opt.NumOutputs = 1,
    seed: opt.Seed = None,
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
    from mtools.models.harmonization import FillOptions, infill_score, parse_position, parse_voices

    if start is None and end is None and voices is None:
        raise UsageError("say what to regenerate: --start/--end, --voices, or both")
    for position in (start, end):
        if position is not None:
            parse_position(position)  # a bad position fails before any input is read
    settings = score_batch(output, to.value if to else None, jobs=jobs,
                           skip_existing=skip_existing, quiet=quiet, progress=progress,
                           takes=num_outputs)
    options = FillOptions(model=model, sampling=sampling_options(temperature, iterations, sampler,
                                                                  allow_parallels,
                                                                  allow_wide_ranges),
                          num_outputs=num_outputs, seed=seed, device=device.value if device else None,
                          start=start, end=end,
                          voices=parse_voices(voices) if voices is not None else ())
    in_format = from_.value if from_ else None
    job = score_job(partial(infill_score, options=options), in_format, settings)
    code = run_batch(score_inputs(inputs), job, settings)
    if code:
        raise typer.Exit(code)


infill.__doc__ = HELP
