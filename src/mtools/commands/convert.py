"""`mtools convert`: MIDI ⇄ JSONL, MusicXML/ABC in, WAV out for auditioning."""

from dataclasses import dataclass
from functools import partial
from typing import Annotated, Optional

import typer

from mtools.commands import _options as opt
from mtools.commands._batch import JobResult, run_batch, score_batch, score_inputs

HELP = """Convert scores between formats; render them to WAV to listen.

Reads MIDI, JSONL (note_seq's JSON, one score per line), MusicXML and ABC;
writes MIDI (the default), JSONL or WAV. The input format is sniffed from the
content; the output format comes from --to, else the -o extension.

Examples:

\b
  mtools convert song.mid --to jsonl | jq '.notes | length'
  mtools convert tune.abc -o tune.mid
  cat take.jsonl | mtools convert --to midi > take.mid
  mtools convert scores/ -o midi/ --jobs 2
  mtools convert song.mid --melody --transpose -12 -o bass.mid
  mtools convert song.mid -o song.wav --soundfont FluidR3_GM.sf2
"""

SOUNDFONT_HELP = ("General MIDI .sf2 for --to wav: a path, or the name of one in "
                  "/usr/share/sounds/sf2 or /usr/share/soundfonts. Default search: $MTOOLS_SOUNDFONT, "
                  "/usr/share/sounds/sf2/*.sf2, then the TimGM6mb.sf2 that the "
                  "pretty_midi package ships.")


@dataclass(frozen=True)
class ConvertOptions:
    in_format: str | None
    out_format: str
    transpose_semitones: int = 0
    melody: bool = False
    sustain: bool = False
    steps_per_quarter: int | None = None
    soundfont: str | None = None


def convert_input(options: ConvertOptions, source) -> JobResult:
    """Read one input, apply the edits, encode (one output per score for
    single-score formats, one JSONL blob otherwise)."""
    from mtools.io.formats import detect_format, encode_outputs, read_scores
    from mtools.score import transform

    data = source.read_bytes()
    fmt = detect_format(data, options.in_format, source.name)
    read = read_scores(data, fmt, source.name)
    try:
        scores = [transform(s, transpose_semitones=options.transpose_semitones,
                            melody=options.melody, sustain=options.sustain,
                            steps_per_quarter=options.steps_per_quarter) for s in read]
    except ValueError as exc:  # --transpose past the MIDI range for this input's notes
        from mtools.errors import InputFormatError
        raise InputFormatError(f"{source.name}: {exc}") from None
    warnings = []
    if not any(s.notes for s in scores):
        warnings.append("--melody found no melody (drums are not one)"
                        if options.melody and any(s.notes for s in read) else "no notes in the input")
    return JobResult(encode_outputs(scores, options.out_format, soundfont=options.soundfont),
                     warnings)


def convert(
    inputs: opt.Inputs = None,
    output: opt.Output = None,
    from_: opt.ScoreFrom = None,
    to: opt.To = None,
    transpose: Annotated[int, typer.Option(
        "--transpose", min=-127, max=127, metavar="SEMITONES",
        help="Shift pitched notes by this many semitones.")] = 0,
    melody: Annotated[bool, typer.Option(
        "--melody", help="Keep only the top line (highest sounding note).")] = False,
    sustain: Annotated[bool, typer.Option(
        "--sustain", help="Lengthen notes held by the sustain pedal.")] = False,
    quantize: Annotated[Optional[int], typer.Option(
        "--quantize", metavar="STEPS", min=1,
        help="Snap notes to STEPS per quarter note (4 = sixteenths).")] = None,
    soundfont: Annotated[Optional[str], typer.Option(
        "--soundfont", metavar="SF2", help=SOUNDFONT_HELP)] = None,
    skip_existing: opt.SkipExisting = False,
    jobs: opt.Jobs = 1,
    quiet: opt.Quiet = False,
    progress: opt.Progress = None,
    debug: opt.Debug = False,
) -> None:
    settings = score_batch(output, to.value if to else None, jobs=jobs,
                           skip_existing=skip_existing, quiet=quiet, progress=progress)
    if soundfont is not None and settings.format != "wav":
        from mtools.errors import UsageError
        raise UsageError(f"--soundfont renders audio; this writes {settings.format}",
                         hint="add --to wav, or -o NAME.wav")
    if settings.format == "wav":
        from mtools.io.render import find_soundfont
        soundfont = str(find_soundfont(soundfont))  # once for the batch, not once per input
    options = ConvertOptions(from_.value if from_ else None, settings.format, transpose, melody,
                             sustain, quantize, soundfont)
    code = run_batch(score_inputs(inputs), partial(convert_input, options), settings)
    if code:
        raise typer.Exit(code)


convert.__doc__ = HELP
