"""`mtools humanize`: play a quantized drum part like a drummer (GrooVAE)."""

from functools import partial

import typer

from mtools.commands import _options as opt
from mtools.commands._batch import run_batch, score_batch, score_inputs, score_job

HELP = """Play a drum part like a drummer: velocities and timing (GrooVAE).

Reads the drum notes (MIDI channel 10) of each input, 2 bars at a time
from the start, and writes them back with the dynamics and the push and
pull of a human player, learned from the Groove MIDI drummers. Every hit
stays where you wrote it (on its grid step); only how hard and how early or
late it is played changes. Other tracks are kept. --temperature 0 gives the
model's most likely performance; higher values vary it (with --seed, -n).

Models: music_vae:groovae (default).

Examples:

\b
  mtools humanize beat.mid > groove.mid
  mtools humanize beat.mid -n 4 --seed 1 -o takes/
  mtools continue beat.mid --model drums_rnn --bars 8 | mtools humanize > played.mid
  mtools humanize loops/ -o humanized/ --skip-existing
"""


def groove_command(task: str, default_model: str, help_text: str):
    """The `humanize` or `drumify` command: the same options, another task
    and default model."""

    def command(
        inputs: opt.Inputs = None,
        output: opt.Output = None,
        model: opt.Model = default_model,
        temperature: opt.Temperature = 0.5,
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
        from mtools.models.grooves import GrooveOptions, groove_score

        settings = score_batch(output, to.value if to else None, jobs=jobs,
                               skip_existing=skip_existing, quiet=quiet, progress=progress,
                               takes=num_outputs)
        options = GrooveOptions(model=model, task=task, temperature=temperature,
                                num_outputs=num_outputs, seed=seed,
                                device=device.value if device else None)
        in_format = from_.value if from_ else None
        job = score_job(partial(groove_score, options=options), in_format, settings)
        code = run_batch(score_inputs(inputs), job, settings)
        if code:
            raise typer.Exit(code)

    command.__name__ = command.__qualname__ = task
    command.__doc__ = help_text
    return command


humanize = groove_command("humanize", "music_vae:groovae", HELP)
