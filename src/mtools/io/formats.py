"""One dispatch point between format names and readers/writers of scores.

Readers take bytes and return scores; writers take scores and return bytes.
Commands choose the output format with `choose_output_format`: `--to`, else
the `-o FILE` extension, else the command's natural default."""

from __future__ import annotations

from mtools.errors import InputFormatError, UsageError
from mtools.io.sniff import AUDIO_FORMATS, SNIFF_BYTES, SYMBOLIC_FORMATS, sniff_format
from mtools.io.streams import OutputPlan
from mtools.score import Score

OUTPUT_FORMATS = ("midi", "jsonl", "wav")
FILE_EXTENSION = {"midi": "mid", "jsonl": "jsonl", "wav": "wav"}
BINARY_FORMATS = frozenset({"midi", "wav"})
# Formats that hold one score per file; JSONL holds any number, one per line.
SINGLE_SCORE_FORMATS = frozenset({"midi", "wav"})


def detect_format(data: bytes, declared: str | None, name: str) -> str:
    """`declared` (from --from) when given, else sniffed from the bytes."""
    if declared:
        return declared
    return sniff_format(data[:SNIFF_BYTES], name)


def read_scores(data: bytes, fmt: str, name: str = "input") -> list[Score]:
    """Parse symbolic input into scores (JSONL and ABC may hold several).
    Raises InputFormatError when the bytes are not valid `fmt`."""
    if not data:
        raise InputFormatError(f"{name}: input is empty")
    if fmt == "midi":
        from mtools.io.midi import midi_to_score
        try:
            return [midi_to_score(data)]
        except InputFormatError as exc:  # the parser does not know the file's name
            raise InputFormatError(f"{name}: {exc.args[0]}", hint=exc.hint) from None
    if fmt == "jsonl":
        from mtools.io.jsonl import iter_jsonl
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFormatError(f"{name}: JSONL is not UTF-8 text ({exc.reason})") from None
        scores = list(iter_jsonl(text, name))
        if not scores:
            raise InputFormatError(f"{name}: JSONL holds no lines")
        return scores
    if fmt in ("musicxml", "mxl", "abc"):
        from mtools.io.notation import notation_to_scores
        return notation_to_scores(data, fmt, name)
    if fmt in AUDIO_FORMATS:
        raise InputFormatError(f"{name}: is {fmt.upper()} audio, but this command reads notes",
                               hint="transcribe it first: mtools transcribe")
    raise InputFormatError(f"{name}: unknown input format {fmt!r}")


def encode_scores(scores: list[Score], fmt: str, *, soundfont: str | None = None) -> bytes:
    """Scores as bytes of `fmt`. MIDI and WAV hold exactly one score."""
    if fmt in SINGLE_SCORE_FORMATS and len(scores) != 1:
        raise UsageError(f"{fmt.upper()} holds one score, got {len(scores)}",
                         hint="use -o DIR/ for one file each, or --to jsonl")
    if fmt == "midi":
        from mtools.io.midi import score_to_midi
        return score_to_midi(scores[0])
    if fmt == "jsonl":
        from mtools.io.jsonl import scores_to_jsonl
        return scores_to_jsonl(scores).encode("utf-8")
    if fmt == "wav":
        from mtools.io.audio import wav_bytes
        from mtools.io.render import RENDER_SAMPLE_RATE_HZ, render_score
        audio = render_score(scores[0], sample_rate_hz=RENDER_SAMPLE_RATE_HZ,
                             soundfont=soundfont)
        return wav_bytes(audio, RENDER_SAMPLE_RATE_HZ)
    raise UsageError(f"cannot write format {fmt!r} (choose from {', '.join(OUTPUT_FORMATS)})")


def encode_outputs(scores: list[Score], fmt: str, *, soundfont: str | None = None) -> list[bytes]:
    """One output per score for single-score formats (MIDI, WAV), one JSONL
    blob holding every score otherwise."""
    if fmt in SINGLE_SCORE_FORMATS:
        return [encode_scores([score], fmt, soundfont=soundfont) for score in scores]
    return [encode_scores(scores, fmt)]


def choose_output_format(to: str | None, plan: OutputPlan, default: str) -> str:
    """--to, else the -o FILE extension, else the command's default; --to
    and an extension that names another format are a usage error (an
    out.jsonl holding MIDI bytes helps no one)."""
    by_extension = plan.extension_format()
    if to and by_extension in OUTPUT_FORMATS and by_extension != to:
        raise UsageError(f"-o {plan.path} names {by_extension} but --to says {to}",
                         hint=f"drop one, or name the file for {to}")
    if to:
        return to
    if by_extension in OUTPUT_FORMATS:
        return by_extension
    if plan.mode == "file" and plan.path is not None and plan.path.suffix:
        raise UsageError(f"-o {plan.path}: cannot tell the format from "
                         f"{plan.path.suffix!r}", hint="add --to midi|jsonl|wav")
    return default


def is_symbolic(fmt: str) -> bool:
    return fmt in SYMBOLIC_FORMATS
