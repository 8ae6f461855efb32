"""Where the time of one `mtools ...` subprocess goes: `python -X importtime`
for the imports, cProfile for the phases of the run, each as markdown rows.

Profiled times run slower than plain ones (cProfile adds a cost to every
Python call; importtime a little to every import), so they show shares, not
exact seconds.
"""

from __future__ import annotations

import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_times(command: Sequence[str]) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """Run `python -X importtime command...` (command[0] a Python script,
    e.g. the mtools entry point) and return its top-level imports as
    (module, cumulative seconds, [(child, seconds), ...] of its heaviest
    direct children), heaviest first."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    tops: list[tuple[str, float, list[tuple[str, float]]]] = []
    pending: list[tuple[str, float]] = []  # children are printed before their parent
    for line in done.stderr.decode(errors="replace").splitlines():
        match = _IMPORT_LINE.match(line)
        if not match:
            continue
        cumulative_s, depth, name = int(match[2]) / 1e6, len(match[3]) // 2, match[4]
        if depth == 0:
            tops.append((name, cumulative_s, sorted(pending, key=lambda c: -c[1])))
            pending = []
        elif depth == 1:
            pending.append((name, cumulative_s))
    return sorted(tops, key=lambda t: -t[1])


def module_s(tops, module: str) -> float:
    """Cumulative import seconds of `module` where it first appears in
    `import_times` output (top level or a direct child), 0 if nowhere."""
    for name, seconds, kids in tops:
        if name == module:
            return seconds
        for child, child_s in kids:
            if child == module:
                return child_s
    return 0.0


def import_rows(tops, *, min_s: float = 0.010, children: int = 3) -> list[str]:
    """Markdown rows `| module | ms | heaviest parts |` for imports over min_s."""
    rows = []
    for name, seconds, kids in tops:
        if seconds < min_s:
            continue
        parts = ", ".join(f"{child} {s * 1e3:.0f}" for child, s in kids[:children]
                          if s >= min_s / 2)
        rows.append(f"| `{name}` | {seconds * 1e3:.0f} | {parts} |")
    return rows


def profile_run(command: Sequence[str]) -> pstats.Stats:
    """Run `python -m cProfile command...` (command[0] a Python script) and
    return its statistics."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "profile.out"
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *command],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        return pstats.Stats(str(out))


def cumulative_s(stats: pstats.Stats, path_suffix: str, function: str) -> float | None:
    """Cumulative seconds of every call of `function` in a file whose path
    ends with `path_suffix` (recursive calls counted once); None if it never
    ran."""
    total, found = 0.0, False
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if name == function and filename.replace("\\", "/").endswith(path_suffix):
            total += ct
            found = True
    return total if found else None


def top_self_time(stats: pstats.Stats, count: int = 8) -> list[tuple[str, int, float, float]]:
    """The `count` functions with the most own time: (where, calls, own s,
    cumulative s)."""
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _) in stats.stats.items():
        where = f"{_short(filename)}:{line}({name})" if line else name
        rows.append((where, calls, own, cumulative))
    return sorted(rows, key=lambda r: -r[2])[:count]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return Path(filename).name


def phase_rows(stats: pstats.Stats, phases: Sequence[tuple[str, str, str]]) -> list[str]:
    """Markdown rows `| phase | ms profiled | share of the first phase |`
    for (label, path suffix, function) phases, the first being the whole
    run; a phase that never ran shows "—"."""
    rows, whole = [], None
    for label, suffix, function in phases:
        seconds = cumulative_s(stats, suffix, function)
        whole = whole or seconds
        if seconds is None:
            rows.append(f"| {label} | — | |")
        else:
            rows.append(f"| {label} | {seconds * 1e3:.0f} | {seconds / whole:.0%} |")
    return rows
