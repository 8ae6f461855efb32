"""`mtools harmonize`: add alto, tenor and bass under a melody."""

from functools import partial
from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt
from mtools.commands._batch import run_batch, score_batch, score_inputs, score_job

HELP = """Harmonize a melody in four voices (soprano, alto, tenor, bass).

Takes the top line of whatever comes in (a single line, a lead sheet, a
piano transcription), quantizes it to 16th notes and keeps it as the
soprano, note for note; the model writes the three voices under it,
without parallel fifths and octaves unless --allow-parallels, and in
the textbook voice ranges unless --allow-wide-ranges. Tempo and
time signature are kept; the output has four named tracks.

Models: coconet (default).

Examples:

\b
  mtools harmonize melody.mid > satb.mid
  mtools convert tune.abc --to midi | mtools harmonize --seed 1 > satb.mid
  mtools harmonize --melody "67 _ _ _ 69 _ 71 _ 72 _ _ _ 71 _ _ _" --program 19 > hymn.mid
  mtools harmonize melody.mid -n 4 --iterations 128 -o takes/
  mtools harmonize melody.mid --allow-parallels > as-the-model-likes.mid
  mtools transcribe song.wav | mtools harmonize | mtools convert --to wav > satb.wav
"""


ITERATIONS = 64  # the commands' default; GibbsOptions.iterations is the same
Iterations = Annotated[int, typer.Option(
    "--iterations", min=0, metavar="N",
    help="Gibbs sampling passes after the first fill (more: slower, often better).")]
Sampler = Annotated[str, typer.Option(
    "--sampler", metavar="NAME",
    help="gibbs (blocked Gibbs with annealed masking) or ancestral (one note at a time; slow).")]
AllowParallels = Annotated[bool, typer.Option(
    "--allow-parallels",
    help="Let the voices move in parallel fifths and octaves as often as the model likes "
         "(by default the sampler all but forbids them, as a chorale teacher would).")]
AllowWideRanges = Annotated[bool, typer.Option(
    "--allow-wide-ranges",
    help="Let each voice leave its textbook range (S C4-G5, A G3-D5, T C3-G4, B E2-C4) as often "
         "as the model likes (by default each semitone outside makes a pitch 4 times less likely).")]
Program = Annotated[int, typer.Option(
    "--program", min=0, max=127, metavar="N",
    help="General MIDI program (0-127) of the voices (default 0, piano; 19 is church organ).")]


def sampling_options(temperature: float, iterations: int, sampler: str, allow_parallels: bool,
                     allow_wide_ranges: bool):
    from mtools.errors import UsageError
    from mtools.models.coconet import PARALLEL_WEIGHT, RANGE_WEIGHT, GibbsOptions

    if sampler not in ("gibbs", "ancestral"):
        raise UsageError(f"--sampler {sampler!r} is not a sampler", hint="use gibbs or ancestral")
    return GibbsOptions(iterations=iterations, temperature=temperature, sampler=sampler,
                        parallel_weight=1.0 if allow_parallels else PARALLEL_WEIGHT,
                        range_weight=1.0 if allow_wide_ranges else RANGE_WEIGHT)


def harmonize(
    inputs: opt.Inputs = None,
    output: opt.Output = None,
    model: opt.Model = "coconet",
    melody: Annotated[Optional[str], typer.Option(
        "--melody", metavar="TEXT",
        help='A melody as text instead of a file: MIDI pitches, "_" holds, "-" rests, '
             'one token per 16th note, e.g. "67 _ _ _ 69 _ 71 _".')] = None,
    temperature: opt.Temperature = 0.5,
    iterations: Iterations = ITERATIONS,
    sampler: Sampler = "gibbs",
    allow_parallels: AllowParallels = False,
    allow_wide_ranges: AllowWideRanges = False,
    num_outputs: opt.NumOutputs = 1,
    seed: opt.Seed = None,
    program: Program = 0,
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
    from mtools.io.streams import primer_input
    from mtools.models.harmonization import FillOptions, harmonize_score

    settings = score_batch(output, to.value if to else None, jobs=jobs,
                           skip_existing=skip_existing, quiet=quiet, progress=progress,
                           takes=num_outputs)
    options = FillOptions(model=model, sampling=sampling_options(temperature, iterations, sampler,
                                                                  allow_parallels,
                                                                  allow_wide_ranges),
                          num_outputs=num_outputs, seed=seed, program=program,
                          device=device.value if device else None)
    if melody is not None:
        if inputs:
            raise UsageError("--melody replaces input files; give one or the other")
        sources, in_format = [primer_input(melody, "melody")], "jsonl"
    else:
        sources, in_format = score_inputs(inputs), from_.value if from_ else None
    job = score_job(partial(harmonize_score, options=options), in_format, settings)
    code = run_batch(sources, job, settings)
    if code:
        raise typer.Exit(code)


harmonize.__doc__ = HELP
