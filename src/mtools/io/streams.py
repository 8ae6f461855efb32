"""Where data comes from and goes to: paths, folders, stdin/stdout, and
output files written atomically (temp file + rename) so an interrupted run
never leaves a half-written file."""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mtools.errors import InputFormatError, InputMissingError, OutputError, StdoutClosed, UsageError
from mtools.io.sniff import EXTENSIONS

STDIN_NAME = "-"


@dataclass(frozen=True)
class Input:
    """One input: a file, or stdin when `path` is None. `relative` is where an
    output for it goes under `-o DIR/` (folder inputs keep their sub-folders)."""

    name: str
    path: Path | None
    relative: Path
    data: bytes | None = None  # an input made in memory (e.g. from --primer text)

    @property
    def is_stdin(self) -> bool:
        return self.path is None and self.data is None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            return sys.stdin.buffer.read()
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise InputMissingError(f"{self.name}: no such file") from None
        except IsADirectoryError:
            raise InputMissingError(f"{self.name}: is a folder") from None
        except PermissionError:
            raise InputMissingError(f"{self.name}: permission denied") from None

    def open_binary(self):
        """A binary stream over the input (stdin's buffer is not closed)."""
        if self.path is None:
            return sys.stdin.buffer
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise InputMissingError(f"{self.name}: {exc.strerror.lower()}") from None


def stdin_input() -> Input:
    return Input("<stdin>", None, Path("stdin"))


def stdin_is_free() -> bool:
    """True when nothing is piped or redirected in: stdin is closed, a
    terminal, or another character device such as /dev/null (cron, make,
    CI). A pipe or a redirected file counts as input, even when empty."""
    if sys.stdin is None or sys.stdin.isatty():
        return True
    try:
        return stat.S_ISCHR(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def primer_input(text: str, name: str = "primer", qpm: float | None = None,
                 drums: bool = False) -> Input:
    """An in-memory JSONL input holding the melody written as `text` (see
    mtools.score.melody_from_text), or with `drums` the drum part (see
    drums_from_text), at `qpm` (default 120); empty text is an empty score.
    Text it cannot read is a usage error naming --`name` (the option that
    gave it)."""
    from mtools.io.jsonl import score_to_jsonl
    from mtools.score import DEFAULT_QPM, drums_from_text, melody_from_text

    try:
        score = (drums_from_text if drums else melody_from_text)(text, qpm=qpm or DEFAULT_QPM)
    except InputFormatError as exc:
        message = str(exc).replace("primer token", "token")
        raise UsageError(f"--{name}: {message}") from None
    return Input(f"<{name}>", None, Path(name), data=score_to_jsonl(score).encode())


def expand_inputs(args: Iterable[str], *, extensions: Iterable[str] | None = None,
                  allow_stdin: bool = True) -> list[Input]:
    """Inputs named on the command line. No argument or "-" means stdin.
    A folder expands to the files below it (recursively, sorted) whose
    extension is one of `extensions` (default: every format mtools reads).
    Paths that do not exist are kept: reading them raises InputMissingError,
    so a batch can report them and go on."""
    args = list(args)
    wanted = {e.lower() for e in (extensions or EXTENSIONS)}
    inputs: list[Input] = []
    for arg in args or [STDIN_NAME]:
        if arg == STDIN_NAME:
            if not allow_stdin:
                raise UsageError("this command takes no standard input")
            if sys.stdin is None or sys.stdin.isatty():
                raise UsageError("no input: name a file or pipe data in",
                                 hint="see --help for examples")
            inputs.append(stdin_input())
            continue
        if not arg.strip():  # Path("") is ".": an unset shell variable must not read the folder
            raise UsageError("an input path is empty", hint="check the variable that names it")
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in wanted)
            if not found:
                raise InputMissingError(f"{arg}: folder holds no input files "
                                        f"({', '.join(sorted(wanted))})")
            inputs.extend(Input(str(p), p, p.relative_to(path)) for p in found)
        else:
            inputs.append(Input(arg, path, Path(path.name)))
    return inputs


@dataclass(frozen=True)
class OutputPlan:
    """Where outputs go: `mode` is "stdout", "file" or "dir"."""

    mode: str
    path: Path | None = None

    @staticmethod
    def from_option(output: str | None) -> "OutputPlan":
        if output is None or output == "-":
            return OutputPlan("stdout")
        if not output.strip():
            raise UsageError("-o needs a file or folder name", hint="-o - writes to stdout")
        if output.endswith(("/", os.sep)) or Path(output).is_dir():
            return OutputPlan("dir", Path(output))
        return OutputPlan("file", Path(output))

    def extension_format(self) -> str | None:
        """The format named by a `-o FILE` extension, if any."""
        if self.mode == "file" and self.path is not None:
            return EXTENSIONS.get(self.path.suffix.lower())
        return None

    def target(self, source: Input, extension: str, index: int | None = None,
               count: int = 1) -> Path | None:
        """The file an output for `source` goes to (None for stdout). With
        several outputs per input, `index` (0-based) becomes a -N suffix,
        zero-padded so the names sort."""
        if self.mode == "stdout":
            return None
        if self.mode == "file":
            return self.path
        stem = source.relative.with_suffix("")
        if index is not None and count > 1:
            stem = stem.with_name(f"{stem.name}-{index + 1:0{len(str(count))}d}")
        return self.path / stem.with_suffix("." + extension)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole
    new one, never a part: a temp file beside it, then rename. A symbolic
    link is written through (its target is replaced, the link stays); a
    FIFO, device or other special file is written into directly, as a
    shell's `>` would (`-o /dev/stdout`, `-o fifo`)."""
    path = Path(path)
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode) and not path.is_dir()
    except OSError:  # not there yet (or a dangling link): made below
        special = False
    if not special and path.is_symlink():
        path = Path(os.path.realpath(path))  # a link to a regular file: replace its target
    if special:  # /dev/stdout on a pipe, a FIFO, a device: opened as the shell's `>` would
        try:
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write: {_why(exc)}") from None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        blocker = _file_in_the_way(path.parent)
        why = f"{blocker} is a file, not a folder" if blocker else _why(exc)
        raise OutputError(f"{path}: cannot write: {why}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, _mode_for(path))
        os.replace(temp, path)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write: {_why(exc)}") from None
        raise


def _mode_for(path: Path) -> int:
    """The permissions a new output gets (mkstemp makes 0600): an existing
    file's own, kept as it is replaced, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _why(exc: OSError) -> str:
    """The system's reason, as the rest of a one-line message: "no space
    left on device"."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of `folder` and its parents that exists as something
    other than a folder (so no folder can be made there), if any."""
    for place in (folder, *folder.parents):
        if place.exists() or place.is_symlink():
            return None if place.is_dir() else place
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_binary_stdout(binary: bool) -> None:
    """Refuse to send binary data to a terminal, as gzip does."""
    if binary and sys.stdout is not None and sys.stdout.isatty():
        raise UsageError("binary output (MIDI/WAV) not written to a terminal",
                         hint="redirect it (> out.mid), pipe it on, use -o FILE, "
                              "or --to jsonl for text")


def is_terminal(path: Path) -> bool:
    """Whether `path` names a terminal (`-o /dev/stdout` or `-o /dev/tty`
    from an interactive shell): binary output is refused there too."""
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return False
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def check_stdout_open() -> None:
    """OutputError when mtools started with stdout closed (`>&-`)."""
    if sys.stdout is None:
        raise OutputError("stdout: cannot write: it is closed", hint="use -o FILE")


def write_stdout(data: bytes | str) -> None:
    """Write data (text is UTF-8 encoded) to stdout and flush; a closed
    pipe raises StdoutClosed."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    check_stdout_open()
    try:
        # A pipe whose reader leaves mid-write takes part of a big write and
        # says so only in the count; the write after it fails as it should.
        view = memoryview(data)
        while view:
            written = sys.stdout.buffer.write(view)
            if not written:
                raise BrokenPipeError
            view = view[written:]
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise StdoutClosed("stdout was closed") from None
    except OSError as exc:  # a full disk behind `> file`, an I/O error
        raise OutputError(f"stdout: cannot write: {_why(exc)}") from None
