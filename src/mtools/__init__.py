"""mtools: the Magenta family of music models as one pipeline-friendly CLI."""

__version__ = "0.1.0"


def main() -> None:
    """The console entry point: `mtools.cli.main`, after its imports. Ctrl-C
    while they load (the first tenth of a second) ends as any interruption
    does (exit 130, one line), not with a traceback."""
    import os
    import sys

    for fd in (0, 1, 2):  # a closed standard fd would be handed to the next file opened
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one (sys.stdout stays None)
    if sys.stderr is None:  # started with 2>&-: messages go nowhere, never into stdout's data
        sys.stderr = open(os.devnull, "w")
    try:
        from mtools.cli import main as cli_main
    except KeyboardInterrupt:
        print("mtools: interrupted", file=sys.stderr)
        sys.exit(130)
    cli_main()
