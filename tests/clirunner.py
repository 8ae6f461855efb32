"""Run the mtools CLI in-process with bytes on stdin, capturing stdout
(bytes), stderr (text) and the exit code."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

from mtools.cli import main


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: str


class _Stream(io.TextIOWrapper):
    def __init__(self, raw: bytes = b"", tty: bool = False):
        super().__init__(io.BytesIO(raw), encoding="utf-8")
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def run(args: list[str], stdin: bytes = b"", *, stdout_tty: bool = False,
        stdin_tty: bool = False) -> Result:
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = _Stream(stdin, stdin_tty)
    sys.stdout = out = _Stream(tty=stdout_tty)
    sys.stderr = err = _Stream()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    out.flush()
    err.flush()
    return Result(code, out.buffer.getvalue(), err.buffer.getvalue().decode())
