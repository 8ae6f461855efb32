"""`mtools transcribe`: audio → notes."""

import sys
from functools import partial
from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt
from mtools.commands._batch import JobResult, run_batch, score_batch

HELP = """Transcribe piano or drum audio into notes (MIDI, or JSONL with --to jsonl).

Reads WAV, FLAC or OGG at any sample rate and channel count, from files,
folders or stdin. Long recordings stream through in blocks, so memory
stays bounded. Notes get velocities; the sustain pedal is heard as longer
notes.

Models (both bundled): onsets_frames (piano, the default) and
onsets_frames_drums (a drum kit: General MIDI drum hits on channel 10 in
8 classes; kick, snare and closed hi-hat are found well, cymbals and open
hi-hat not at all on a kit it never trained on: see its card with `mtools
models --json`).

Examples:

\b
  mtools transcribe piano.wav > piano.mid
  cat piano.wav | mtools transcribe --to jsonl | jq '.notes | length'
  mtools transcribe recordings/ -o midi/ --skip-existing --jobs 2
  mtools transcribe song.wav | mtools harmonize > satb.mid
  mtools transcribe take.flac --onset-threshold 0.7 --min-note-ms 30 -o take.mid
  mtools transcribe octaves.wav --harmonic-threshold 0 > all.mid   # keep weak octaves too
  mtools transcribe drums.wav --model onsets_frames_drums -o drums.mid
"""


def transcribe(
    inputs: opt.Inputs = None,
    output: opt.Output = None,
    model: opt.Model = "onsets_frames",
    onset_threshold: Annotated[Optional[float], typer.Option(
        "--onset-threshold", callback=opt.finite, min=0.0, max=1.0, metavar="P",
        help="Onset probability that starts a note (higher: fewer, surer notes; "
             "default: the model's own, chosen on validation audio; a drum model's may be "
             "one per class, which this replaces for every class).")] = None,
    frame_threshold: Annotated[Optional[float], typer.Option(
        "--frame-threshold", callback=opt.finite, min=0.0, max=1.0, metavar="P",
        help="Frame probability that keeps a note sounding (default: the model's "
             "own).")] = None,
    harmonic_threshold: Annotated[Optional[float], typer.Option(
        "--harmonic-threshold", callback=opt.finite, min=0.0, max=1.0, metavar="P",
        help="Onset probability a note needs when it starts with a note at least as sure an "
             "octave, a twelfth or two octaves below, whose partial it may be (0 keeps them "
             "all; default: the model's own).")] = None,
    min_note_ms: Annotated[float, typer.Option(
        "--min-note-ms", callback=opt.finite, min=0.0, metavar="MS", help="Drop notes shorter than this.")] = 0.0,
    program: Annotated[int, typer.Option(
        "--program", min=0, max=127, metavar="N",
        help="General MIDI program of the notes written (default 0, piano).")] = 0,
    to: opt.To = None,
    device: opt.DeviceOpt = None,
    skip_existing: opt.SkipExisting = False,
    jobs: opt.Jobs = 1,
    quiet: opt.Quiet = False,
    progress: opt.Progress = None,
    debug: opt.Debug = False,
) -> None:
    from mtools.io.sniff import AUDIO_FORMATS, extensions_for
    from mtools.io.streams import expand_inputs
    from mtools.models.onsets_frames import TranscribeOptions
    from mtools.models.transcription import DecodeOptions

    settings = score_batch(output, to.value if to else None, jobs=jobs,
                           skip_existing=skip_existing, quiet=quiet, progress=progress)
    options = TranscribeOptions(
        model=model, device=device.value if device else None, program=program,
        decode=DecodeOptions(onset_threshold, frame_threshold, min_note_ms / 1000.0,
                             harmonic_threshold))
    sources = expand_inputs(inputs or [], extensions=extensions_for(AUDIO_FORMATS))
    # One file: seconds done as it goes; a batch shows its bar of files instead.
    report = len(sources) == 1 and opt.shows_progress(progress, quiet)
    code = run_batch(sources, partial(transcribe_job, options, settings.format, report), settings)
    if code:
        raise typer.Exit(code)


def transcribe_job(options, out_format: str, report: bool, source) -> JobResult:
    from mtools.io.formats import encode_outputs
    from mtools.models.onsets_frames import transcribe_input

    progress = partial(_report, source.name) if report else None
    score = transcribe_input(source, options, progress)
    if report:
        print(file=sys.stderr, flush=True)  # end the progress line
    return JobResult(encode_outputs([score], out_format))


def _report(name: str, done_s: float, total_s: float) -> None:
    """One progress line per file on stderr, rewritten in place."""
    print(f"\rmtools transcribe: {name}: {done_s:.0f} of {total_s:.0f} s", end="",
          file=sys.stderr, flush=True)


transcribe.__doc__ = HELP
