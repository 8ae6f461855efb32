"""`mtools models`: what is bundled, with size, data, metrics and checksum."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from mtools.commands import _options as opt

HELP = """List the bundled models (and those on $MTOOLS_MODEL_PATH).

Shows for each model its task, size, training data, the figures measured
when it was exported, and its sha256. Use NAME or NAME:CONFIG with --model.

Examples:

\b
  mtools models
  mtools models --json | jq -r '.[].name'
"""


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as a JSON array.")] = False,
    debug: opt.Debug = False,
) -> None:
    from mtools.io.streams import write_stdout
    from mtools.models.registry import list_models

    cards = list_models()
    if as_json:
        write_stdout(json.dumps([c.to_dict() for c in cards], indent=2, sort_keys=True) + "\n")
        return
    if not cards:
        print("mtools: no models are bundled in this build "
              "(add your own with MTOOLS_MODEL_PATH or --model PATH)", file=sys.stderr)
        return
    _print_table(cards)


def _print_table(cards) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("model", "task", "size", "trained on", "metrics", "sha256"):
        table.add_column(column)
    for card in cards:
        name = card.spec
        datasets = card.training.get("datasets", [])
        data = ", ".join(map(str, datasets)) if isinstance(datasets, list) else str(datasets)
        metrics = ", ".join(f"{k} {v}" for k, v in card.metrics.items()
                            if isinstance(v, (int, float)))
        table.add_row(name, card.task, f"{card.size_bytes / 1e6:.1f} MB", data, metrics,
                      card.sha256[:12])
    Console(soft_wrap=False).print(table)


models.__doc__ = HELP
