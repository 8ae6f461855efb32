"""Options every command shares, declared once so they mean the same
everywhere (long options kebab-case, booleans --x/--no-x)."""

from enum import Enum
from typing import Annotated, Optional

import math

import typer


class ScoreFormat(str, Enum):
    """The input formats of commands that read notes, not audio."""

    midi = "midi"
    jsonl = "jsonl"
    musicxml = "musicxml"
    mxl = "mxl"
    abc = "abc"


class OutFormat(str, Enum):
    midi = "midi"
    jsonl = "jsonl"
    wav = "wav"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"



def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinities are no numbers a musician means
    (and a NaN passes every min/max check)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def positive(value: float | None) -> float | None:
    """Option callback: a finite number above 0 (typer's `min` cannot say
    "above", and its help would read [x>=0.0])."""
    value = finite(value)
    if value is not None and value <= 0:
        raise typer.BadParameter(f"{value:g} is not above 0")
    return value


Inputs = Annotated[Optional[list[str]], typer.Argument(
    metavar="INPUT", show_default=False,
    help="Files or folders to read; none or '-' reads stdin.")]
Output = Annotated[Optional[str], typer.Option(
    "-o", "--output", metavar="PATH",
    help="Write here instead of stdout. 'DIR/' writes one file per input (or per "
         "output) with a predictable name; the extension of FILE picks the format.")]
ScoreFrom = Annotated[Optional[ScoreFormat], typer.Option(
    "--from", metavar="FORMAT", help="Input format (midi, jsonl, musicxml, mxl, abc) instead of "
         "sniffing it from the content.",
    show_default=False)]
To = Annotated[Optional[OutFormat], typer.Option(
    "--to", metavar="FORMAT", help="Output format: midi, jsonl or wav (default: from -o's extension, else the "
         "command's own).",
    show_default=False)]
Model = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="NAME|PATH",
    help="A bundled model (see 'mtools models'), NAME:CONFIG, or a folder/.onnx of your own.")]
Seed = Annotated[Optional[int], typer.Option(
    "--seed", metavar="N", min=0, help="Random seed: the same seed gives the same output bit for bit.")]
DeviceOpt = Annotated[Optional[Device], typer.Option(
    "--device", envvar="MTOOLS_DEVICE", show_default=False, metavar="DEVICE",
    help="Where models run: auto (CUDA when it can really run, else CPU), cpu or cuda.")]
Temperature = Annotated[float, typer.Option(
    "--temperature", callback=finite, min=0.0, metavar="T", help="Sampling temperature: lower is safer, higher wilder.")]
MAX_OUTPUTS = 1000  # per input and run: all of them are made side by side, in memory
NumOutputs = Annotated[int, typer.Option(
    "--num-outputs", "-n", min=1, max=MAX_OUTPUTS, metavar="N",
    help=f"How many outputs to generate per input (at most {MAX_OUTPUTS}).")]
Jobs = Annotated[int, typer.Option(
    "--jobs", "-j", min=1, metavar="N", help="Process this many inputs in parallel.")]
SkipExisting = Annotated[bool, typer.Option(
    "--skip-existing/--no-skip-existing",
    help="With -o DIR/, leave inputs whose output already exists (resume a batch).")]
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Print no warnings or progress, only errors.")]
Progress = Annotated[Optional[bool], typer.Option(
    "--progress/--no-progress", show_default=False,
    help="Show progress on stderr even when it is not a terminal (--no-progress: not even "
         "on one; default: on a terminal).")]


def shows_progress(progress: bool | None, quiet: bool) -> bool:
    """Whether to draw progress on stderr: never with --quiet; as --progress
    or --no-progress said; else when stderr is a terminal."""
    import sys

    return not quiet and (sys.stderr.isatty() if progress is None else progress)
Debug = Annotated[bool, typer.Option(
    "--debug", help="Show Python tracebacks for errors.")]
