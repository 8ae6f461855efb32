"""Shared pieces of the benchmark scripts: repeated timings, machine facts,
and benchmarks/results.md, where each script owns one section (and may own
per-model parts after it, named `section:model`).

A section lies between `<!-- BEGIN name -->` and `<!-- END name -->`; a
script rewrites only its own, so the scripts can run in any order and a rerun
of one leaves the others' numbers alone.
"""

from __future__ import annotations

import datetime
import gc
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

RESULTS_MD = Path(__file__).with_name("results.md")
_PREAMBLE = """# mtools benchmarks

Each section below is written by one script in `benchmarks/` (named in it);
rerunning a script replaces only its own section. Timings are wall-clock
seconds: median over the runs, with the fastest run in parentheses.
"""


@dataclass(frozen=True)
class Stats:
    """Wall-clock seconds of repeated runs of one thing."""

    runs_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    @property
    def min_s(self) -> float:
        return min(self.runs_s)

    def cell(self) -> str:
        """`median (min)` for a table cell, in seconds."""
        return f"{_seconds(self.median_s)} ({_seconds(self.min_s)})"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def time_calls(calls: dict[str, Callable[[], object]], repeat: int, *,
               warm_up: bool = True) -> dict[str, Stats]:
    """Time each in-process call `repeat` times, after one untimed run unless
    the caller has warmed them up, round-robin (a b c a b c ...) so that
    drifting load on the machine falls on all of them alike. Garbage is
    collected before each timed call."""
    for call in calls.values() if warm_up else ():
        call()
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            gc.collect()
            start = time.perf_counter()
            call()
            runs[name].append(time.perf_counter() - start)
    return {name: Stats(tuple(r)) for name, r in runs.items()}


def compile_bytecode() -> None:
    """Write the .pyc of every mtools module that lacks a current one, as
    `pip install` does for an installed package. Without it an editable
    install under PYTHONDONTWRITEBYTECODE (these machines' shells set it)
    compiles mtools from source at every start, ~20 ms a module here."""
    import compileall

    import mtools

    compileall.compile_dir(Path(mtools.__file__).parent, quiet=1)


def time_commands(commands: dict[str, Sequence[str]], repeat: int, *,
                  warm_up: bool = True) -> dict[str, Stats]:
    """Time each command as a subprocess (stdout and stderr discarded)
    `repeat` times, after one untimed run unless the caller has warmed them
    up, round-robin, mtools' bytecode written first (`compile_bytecode`).
    A command that fails raises RuntimeError with its stderr."""
    def run(command: Sequence[str]) -> float:
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: "
                               f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        return elapsed

    compile_bytecode()
    for command in commands.values() if warm_up else ():
        run(command)
    runs: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            runs[name].append(run(command))
    return {name: Stats(tuple(r)) for name, r in runs.items()}


def machine_info(packages: Sequence[str], command: str) -> str:
    """Markdown bullets: date, CPU, Python, package versions, and the
    command that produced the section."""
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    load = os.getloadavg()
    busy = ("; BUSY: other work shared the cores, so every timing is inflated"
            if load[0] > (os.cpu_count() or 1) else "")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"- date: {now}",
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores visible; "
        f"{platform.system()} {platform.release()}; load average "
        f"{'/'.join(f'{x:.1f}' for x in load)} (1/5/15 min) when the run ended{busy}",
        f"- CPU speed (tables from other machines compare only through these): {_cpu_speed()}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- packages: {versions}",
        f"- command: `{command}`",
    ])


def _cpu_speed() -> str:
    """The CPU's family/model, the vector extensions ONNX Runtime's kernels
    pick from, and two quick calibrations: one core's Python (a `for`
    loop adding ints) and numpy's float32 matrix product."""
    import numpy as np

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    field = lambda name: (re.search(rf"^{name}\s*:\s*(.+)$", text, re.MULTILINE)  # noqa: E731
                          or [None, "?"])[1].strip()
    flags = set(field("flags").split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
            if f in flags]
    loops = 1_000_000
    started = time.perf_counter()
    total = 0
    for value in range(loops):
        total += value
    loop_ns = (time.perf_counter() - started) / loops * 1e9
    a = np.ones((512, 512), np.float32)
    a @ a
    started, products = time.perf_counter(), 20
    for _ in range(products):
        a @ a
    gflops = 2 * 512 ** 3 * products / (time.perf_counter() - started) / 1e9
    return (f"family {field('cpu family')} model {field('model')}, {' '.join(simd) or 'no AVX2'}; "
            f"Python for-loop {loop_ns:.0f} ns per iteration; numpy float32 matmul "
            f"{gflops:.0f} GFLOP/s")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown CPU"


def write_section(name: str, body: str, path: Path = RESULTS_MD, after: str | None = None) -> None:
    """Put `body` between this section's markers in results.md, replacing
    what was there. A new section goes after the last section named
    `after` or `after:…` (a benchmark's per-model parts follow its own
    section), else at the end."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else _PREAMBLE
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    ends = list(re.finditer(r"<!-- END " + re.escape(after) + r"(?::[^>]*)? -->", text)) \
        if after else []
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    elif ends:
        cut = ends[-1].end()
        text = text[:cut] + "\n\n" + block + text[cut:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
