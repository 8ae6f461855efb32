"""`mtools train` and `mtools eval` end to end on a tiny folder of tunes:
the exported card's figures are reproduced by `mtools eval`."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from builders import write_random_tunes  # noqa: E402
from clirunner import run  # noqa: E402
from mtools.models.registry import resolve_model  # noqa: E402


@pytest.fixture(scope="module")
def tunes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tunes")
    write_random_tunes(folder)
    return folder


def test_train_exports_a_card_that_eval_reproduces(tunes, tmp_path):
    out = tmp_path / "models"
    trained = run(["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--out", out,
                   "--run-dir", tmp_path / "run", "--max-steps", "3", "--hidden", "8",
                   "--layers", "1", "--batch-size", "4", "--quiet"])
    assert trained.code == 0, trained.stderr
    card = resolve_model(str(out / "melody_rnn-basic_rnn.json")).card
    metrics = card.metrics
    assert card.training["steps"] == 3 and card.training["valid_pieces"] > 0
    assert metrics["parity_max_abs_error"] < 1e-4 and 0 <= metrics["accuracy"] <= 1
    assert metrics["ngram_order"] >= 1 and metrics["ngram_nll_per_step"] > 0
    evaluated = run(["eval", "--model", out / "melody_rnn-basic_rnn.onnx", tunes, "--split",
                     "valid", "--json"])
    assert evaluated.code == 0, evaluated.stderr
    figures = json.loads(evaluated.stdout)
    assert figures["nll_per_step"] == metrics["nll_per_step"]
    assert figures["accuracy"] == metrics["accuracy"]
    resumed = run(["train", "melody_rnn", "--config", "basic_rnn", "--data", tunes, "--out", out,
                   "--run-dir", tmp_path / "run", "--max-steps", "5", "--hidden", "8",
                   "--layers", "1", "--batch-size", "4", "--quiet"])
    assert resumed.code == 0 and resolve_model(str(out)).card.training["steps"] == 5


def test_unknown_config_is_a_usage_error(tunes, tmp_path):
    out = run(["train", "melody_rnn", "--config", "nope", "--data", tunes, "--out", tmp_path])
    assert out.code == 2 and "melody_rnn:basic_rnn" in out.stderr
