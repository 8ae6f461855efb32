"""The mtools application: registers the subcommands and maps errors to the
exit codes of DESIGN.md (0 ok, 1 failure, 2 usage, 65 bad data, 66 missing
input, 69 model/runtime unavailable). Importing this module is cheap: no
numpy, torch or onnxruntime; command modules import their libraries lazily."""

from __future__ import annotations

import errno
import importlib
import os
import sys
import warnings

import typer

try:  # typer 0.2x carries its own click
    from typer._click.exceptions import ClickException
except ImportError:  # older typer uses click itself
    from click.exceptions import ClickException

from mtools import __version__
from mtools.errors import EXIT_FAILURE, EXIT_INTERRUPTED, MtoolsError, StdoutClosed, debugging

HELP = """Music models in Unix pipelines: transcribe, continue, harmonize, ...

Every command reads files, folders or stdin and writes stdout or -o PATH;
scores travel as MIDI or JSONL (note_seq's JSON), audio as WAV.

Examples:

\b
  mtools convert song.mid --to jsonl | jq '.notes | length'
  mtools models
"""

# name → (module under mtools.commands, function), in the order --help lists them
COMMANDS = {
    "transcribe": ("transcribe", "transcribe"), "continue": ("continue_", "continue_"),
    "convert": ("convert", "convert"), "harmonize": ("harmonize", "harmonize"),
    "infill": ("infill", "infill"), "humanize": ("humanize", "humanize"),
    "drumify": ("drumify", "drumify"), "interpolate": ("interpolate", "interpolate"),
    "models": ("models", "models"), "train": ("train", "train"), "eval": ("eval", "eval_"),
}
_SETTINGS = dict(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                 context_settings={"help_option_names": ["-h", "--help"],
                                   "max_content_width": 100})
_full: typer.Typer | None = None


def _command(name: str):
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(f"mtools.commands.{module}"), function)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mtools {__version__}")
        raise typer.Exit()


def _root(version: bool = typer.Option(False, "--version", callback=_version,
                                       is_eager=True, help="Print the version and exit.")):
    pass


def full_app() -> typer.Typer:
    """The whole command tree (`mtools --help`, the docs, completions)."""
    global _full
    if _full is None:
        _full = typer.Typer(name="mtools", help=HELP, no_args_is_help=True, **_SETTINGS)
        _full.callback()(_root)
        for name in COMMANDS:
            _full.command(name)(_command(name))
    return _full


def _one_command(name: str) -> typer.Typer:
    """An app of one subcommand: `mtools continue ...` imports and builds
    only what `continue` needs (the whole tree costs ~70 ms a run)."""
    single = typer.Typer(**_SETTINGS)
    single.command(name)(_command(name))
    return single


def __getattr__(name: str):
    if name == "app":  # `from mtools.cli import app`: built on first use
        return full_app()
    raise AttributeError(name)


def _one_line(error: ClickException) -> str:
    """A click usage error as one line: which command, what is wrong, where
    the help is (click itself prints usage, a hint and the error on three)."""
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    path = context.command_path if context is not None else "mtools"
    command = path[len("mtools "):] if path.startswith("mtools ") else ""
    where = f"mtools {command} --help" if command else "mtools --help"
    return f"{command + ': ' if command else ''}{message} (see `{where}`)"


def _quiet_broken_pipe() -> int:
    """The reader went away (`| head`): stop quietly, as `cat` does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return StdoutClosed.exit_code


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in COMMANDS:
            target, args, prog = _one_command(argv[0]), argv[1:], f"mtools {argv[0]}"
        else:
            target, args, prog = full_app(), argv, "mtools"
        with warnings.catch_warnings():
            if not debugging(argv):  # a library's RuntimeWarning is noise to a user; --debug shows it
                warnings.simplefilter("ignore")
            code = target(args=args, prog_name=prog, standalone_mode=False)
        if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into this code before we see it
            raise KeyboardInterrupt
        sys.exit(code if isinstance(code, int) else 0)
    except ClickException as exc:  # the option parser's complaint: one line, as ours are
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `mtools`: the help, on stderr
            print(exc.format_message(), file=sys.stderr)
        else:
            print(f"mtools: {_one_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except SystemExit as exc:
        if exc.code not in (0, None) and not isinstance(exc.code, int):
            raise
        raise
    except (BrokenPipeError, StdoutClosed):
        sys.exit(_quiet_broken_pipe())
    except MtoolsError as exc:
        if debugging(argv):
            raise
        print(f"mtools: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("mtools: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        if debugging(argv):
            raise
        if not _stdout_fails(exc):
            _internal_error(exc)
        # help, --version or a table printed straight to a full disk (`> /dev/full`):
        # files and data on stdout go through mtools.io.streams, which says so itself
        from mtools.io.streams import _why
        print(f"mtools: stdout: cannot write: {_why(exc)}", file=sys.stderr)
        _quiet_broken_pipe()  # the unwritten rest must not fail again at exit
        sys.exit(EXIT_FAILURE)
    except Exception as exc:  # a bug: one line unless --debug
        if debugging(argv):
            raise
        _internal_error(exc)


def _internal_error(exc: BaseException) -> None:
    print(f"mtools: internal error: {type(exc).__name__}: {exc} "
          f"(run with --debug for the traceback)", file=sys.stderr)
    sys.exit(EXIT_FAILURE)


def _stdout_fails(exc: OSError) -> bool:
    """Whether `exc` is a write error from printing to stdout: help or
    --version (click's echo) or a table (rich), which write straight to it;
    a file, the data on stdout (mtools.io.streams) and the rest say so
    themselves."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF):
        return False
    frame, printing = exc.__traceback__, False
    while frame is not None:
        code = frame.tb_frame.f_code
        printing = printing or code.co_name == "echo" and "click" in code.co_filename \
            or code.co_name == "print" and "rich" in code.co_filename
        frame = frame.tb_next
    return printing
