"""`mtools models`: what is bundled, with size, data, metrics and checksum."""

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
  mtools models --json | jq -r '.[].spec'  # the names --model takes
"""


# The figures the table shows, when a card has them, with short labels
# (--json shows all).
HEADLINE_METRICS = {"nll_per_step": "nll {:.3g}", "ngram_nll_per_step": "n-gram {:.3g}",
                    "accuracy": "acc {:.3g}", "accuracy_sampled": "recon acc {:.3g}",
                    "hit_f1": "hit F1 {:.3g}", "by_position_hit_f1": "(by position: F1 {:.3g})",
                    "velocity_mae": "velocity MAE {:.3g}",
                    "offset_mae_steps": "timing MAE (16ths) {:.3g}",
                    "note_f1": "note F1 {:.3g}", "frame_nll": "frame nll {:.3g}"}


def models(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the cards as a JSON array (each with its `spec`, the name --model takes).")] = False,
    debug: opt.Debug = False,
) -> None:
    from mtools.io.streams import write_stdout
    from mtools.models.registry import list_models

    skipped = []
    cards = list_models(skipped=skipped.append)
    for error in skipped:
        print(f"mtools: skipped {error}", file=sys.stderr)
    if as_json:
        write_stdout(json.dumps([{**c.to_dict(), "spec": c.spec} for c in cards], indent=2,
                                sort_keys=True) + "\n")
    elif not cards:
        print("mtools: no models are bundled in this build "
              "(add your own with MTOOLS_MODEL_PATH or --model PATH)", file=sys.stderr)
    else:
        _print_table(cards)
    if skipped:  # the others are listed, and the exit status says one was not
        raise typer.Exit(skipped[0].exit_code)


def _print_table(cards) -> None:
    from rich.console import Console
    from rich.table import Table

    from mtools.io.streams import check_stdout_open

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("model", "task", "size", "trained on", "metrics", "sha256"):
        table.add_column(column, no_wrap=column in ("model", "size", "sha256"))
    for card in cards:
        name = card.spec
        datasets = card.training.get("datasets", [])
        data = ", ".join(map(str, datasets)) if isinstance(datasets, list) else str(datasets)
        metrics = " ".join(label.format(card.metrics[k]) for k, label in HEADLINE_METRICS.items()
                           if isinstance(card.metrics.get(k), (int, float)))
        sampling = card.encoding.get("sampling", {})
        notes = [f"samples at temperature {sampling['temperature']:g}"] \
            if "temperature" in sampling else []
        if card.encoding.get("repeat_bias"):
            notes.append(f"repeat bias {card.encoding['repeat_bias']:g}")
        if notes:
            metrics += f" ({', '.join(notes)})"
        table.add_row(name, card.task, f"{card.size_bytes / 1e6:.1f} MB", data, metrics,
                      card.sha256[:12])
    # A pipe or file gets whole rows (rich would assume 80 columns).
    check_stdout_open()
    Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200).print(table)


models.__doc__ = HELP
