"""Does every bundled model card's figure come back? Runs the `mtools eval`
command each card names in `metrics.measured_by` ("reproduce: ..." or the
command itself) with --json, and compares each figure it prints with the
card's figure of the same name.

    .venv/bin/python benchmarks/reproduce_cards.py [--models NAME ...] [--dry-run]

A figure agrees when it is within TOLERANCE (relative, at least 1e-3
absolute); speeds (realtime_factor) are not compared. Run it on a fresh
machine (an empty ~/.cache/mtools) to catch figures that only come back
from one machine's caches: the first run parses and renders every corpus
(about 20 minutes on 2 cores). The models need what their data needs
(README: Debian's soundfonts for transcription, mma for the trios); a
command that cannot run is listed with its one-line error. Rewrites the
`reproduce_cards` section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _results import machine_info, write_section

from mtools.models.registry import list_models

TOLERANCE = 1e-3
NOT_COMPARED = ("realtime_factor",)
MTOOLS = Path(sys.executable).with_name("mtools")


def reproduce_command(measured_by: str) -> list[str] | None:
    """The `mtools eval ...` words a card's measured_by names (its
    "reproduce:" part first); None where it names none."""
    text = measured_by.partition("reproduce: ")[2] or measured_by
    found = re.search(r"mtools eval [^;()\[]+", text)
    return shlex.split(found.group(0).strip())[1:] if found else None


def shared_figures(card_figures: dict, printed: dict) -> dict[str, tuple[float, float]]:
    """{name: (card, printed)} of the numbers both hold (speeds left out)."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return {name: (card_figures[name], value) for name, value in printed.items()
            if name not in NOT_COMPARED and number(value) and number(card_figures.get(name))}


def differing(card_figures: dict, printed: dict) -> dict[str, tuple[float, float]]:
    """The shared figures that disagree by more than TOLERANCE."""
    return {name: (mine, value) for name, (mine, value)
            in shared_figures(card_figures, printed).items()
            if abs(value - mine) > TOLERANCE * max(1.0, abs(mine))}


def check(card) -> dict:
    command = reproduce_command(card.metrics.get("measured_by", ""))
    row = {"model": card.spec, "command": command}
    if command is None:
        return {**row, "verdict": "names no mtools eval command"}
    started = time.monotonic()
    done = subprocess.run([str(MTOOLS), *command, "--json"], capture_output=True, text=True)
    row["seconds"] = round(time.monotonic() - started)
    if done.returncode:
        error = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {**row, "verdict": f"exit {done.returncode}: {error}"}
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = differing(card.metrics, printed)
    verdict = ("agrees" if not wrong else "DIFFERS: " + ", ".join(
        f"{k} {a} (card) vs {b}" for k, (a, b) in wrong.items()))
    return {**row, "compared": len(shared_figures(card.metrics, printed)), "verdict": verdict}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  .venv/bin/python benchmarks/reproduce_cards.py --models onsets_frames "
               "trio --dry-run")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="only cards whose spec contains one of these")
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args(argv)
    cards = [c for c in list_models() if not args.models or any(m in c.spec for m in args.models)]
    rows = []
    for card in cards:
        row = check(card)
        rows.append(row)
        print(f"reproduce_cards: {row['model']}: {row['verdict']}", file=sys.stderr, flush=True)
    lines = ["| model | command | figures compared | seconds | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        command = f"`mtools {shlex.join(row['command'])}`" if row["command"] else "—"
        lines.append(f"| `{row['model']}` | {command} | {row.get('compared', '—')} | "
                     f"{row.get('seconds', '—')} | {row['verdict']} |")
    command = "benchmarks/reproduce_cards.py " + shlex.join(argv or sys.argv[1:])
    body = "\n".join([
        "## Do the cards' figures come back? (`mtools eval` as each card names it)", "",
        machine_info(["onnxruntime"], command.strip()), "",
        f"Each card's reproduce command, run with --json; a figure agrees within {TOLERANCE:g} "
        "(relative, at least that much absolute); speeds are not compared. seconds include "
        "parsing or rendering what no cache held yet.", "", *lines])
    if args.dry_run:
        print(body)
    else:
        write_section("reproduce_cards", body)
    if any(row["verdict"] != "agrees" for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
