"""The one exception hierarchy of mtools.

Library code raises these and never prints or exits; `mtools.cli` maps each
class to the exit code that DESIGN.md promises and prints one line on stderr.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DATAERR = 65  # sysexits EX_DATAERR: the input data is malformed
EXIT_NOINPUT = 66  # sysexits EX_NOINPUT: an input file is missing or unreadable
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a model or runtime is missing
EXIT_INTERRUPTED = 130  # 128 + SIGINT: stopped by Ctrl-C; finished outputs are kept, none half-written


def debugging(argv: list[str] | None = None) -> bool:
    """Whether tracebacks are shown: --debug among the arguments (default:
    the process's), or $MTOOLS_DEBUG set to anything but empty or 0."""
    import os
    import sys

    return "--debug" in (sys.argv if argv is None else argv) or \
        os.environ.get("MTOOLS_DEBUG", "") not in ("", "0")


class MtoolsError(Exception):
    """Base class. `exit_code` is what the CLI exits with; `hint` is an
    optional second sentence telling the user what to do about it."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(MtoolsError):
    """Options that contradict each other or cannot apply to this input."""

    exit_code = EXIT_USAGE


class InputFormatError(MtoolsError):
    """Input that exists but cannot be understood (bad bytes, bad JSON, no notes
    where notes are required)."""

    exit_code = EXIT_DATAERR


class InputMissingError(MtoolsError):
    """An input path that does not exist or cannot be read."""

    exit_code = EXIT_NOINPUT


class ModelNotFoundError(MtoolsError):
    """A `--model` name or path that resolves to nothing, or a model whose
    files fail their checksum."""

    exit_code = EXIT_UNAVAILABLE


class RuntimeUnavailableError(MtoolsError):
    """A needed runtime piece is not installed (ONNX Runtime, a soundfont,
    the `train` extra)."""

    exit_code = EXIT_UNAVAILABLE


class StdoutClosed(MtoolsError):
    """The reader of stdout went away (`| head`). Not a failure to report:
    the CLI ends quietly with the status a shell gives a tool killed by
    SIGPIPE. Raised in place of BrokenPipeError, which Click would turn
    into exit status 1."""

    exit_code = 141  # 128 + SIGPIPE


class OutputError(MtoolsError):
    """An output that cannot be written (refused terminal, unwritable path)."""

    exit_code = EXIT_FAILURE
