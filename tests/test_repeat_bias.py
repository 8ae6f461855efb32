"""A melody model's repeat bias: fitted by likelihood on the training
split, written into the card, and then part of every figure `mtools eval`
prints and every take `mtools continue` plays."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from builders import write_random_tunes  # noqa: E402
from clirunner import run  # noqa: E402
from tiny_models import tiny_event_model  # noqa: E402
from mtools.errors import UsageError  # noqa: E402
from mtools.models.registry import resolve_model, write_card  # noqa: E402
from mtools.models.sequence import EventRnn  # noqa: E402
from mtools.training.quantize import measure  # noqa: E402
from mtools.training.repeat_bias import (SEARCH, RepeatLikelihood, best_bias,  # noqa: E402
                                           fit_repeat_bias)
from mtools.training.tasks import Example  # noqa: E402


def _model(tmp_path):
    path = tiny_event_model(tmp_path / "model", config="basic_rnn", hidden=16)
    return EventRnn.from_ref(resolve_model(str(path)), device="cpu")


def test_the_fitted_bias_follows_how_often_the_data_repeats(tmp_path):
    model = _model(tmp_path)
    rng = np.random.default_rng(0)
    steps = [list(rng.permutation(np.arange(2, 38))[:30]) for _ in range(6)]
    never = [Example(np.array(pitches)) for pitches in steps]  # no pitch follows itself
    always = [Example(np.repeat(np.array(pitches[:3]), 10)) for pitches in steps]
    for examples, sign in ((never, -1), (always, 1)):
        likelihood = RepeatLikelihood(model, examples)
        bias = best_bias(likelihood)
        assert np.sign(bias) == sign and likelihood.nll(bias) < likelihood.nll(0.0)
        nearby = [b for b in (bias - 0.05, bias + 0.05) if SEARCH[0] <= b <= SEARCH[1]]
        assert nearby and likelihood.nll(bias) <= min(likelihood.nll(b) for b in nearby)


def test_fitting_writes_the_card_and_eval_and_continue_use_it(tmp_path):
    tunes = tmp_path / "tunes"
    tunes.mkdir()
    write_random_tunes(tunes)
    path = tiny_event_model(tmp_path / "model", config="basic_rnn", hidden=16)
    card = json.loads(path.with_suffix(".json").read_text())
    card["metrics"] = measure(path, [str(tunes)])
    write_card(card, path)
    with pytest.raises(UsageError, match="--data"):
        fit_repeat_bias(path)
    fit = fit_repeat_bias(path, [str(tunes)])
    ref = resolve_model(str(path))
    assert ref.card.encoding["repeat_bias"] == fit["repeat_bias"] != 0
    assert ref.card.encoding["repeat_bias_fit"]["valid_without"] == {
        k: card["metrics"][k] for k in ("nll_per_step", "accuracy")}
    assert fit["train_nll_per_step"]["with"] <= fit["train_nll_per_step"]["without"]
    again = measure(path, [str(tunes)])  # what `mtools eval` prints, the bias read from the card
    assert ref.card.metrics["nll_per_step"] == again["nll_per_step"] == fit["valid_with"]["nll_per_step"]
    for _ in range(2):  # fitted again: the same bias, one note in measured_by
        fit_repeat_bias(path, [str(tunes)])
        refit = resolve_model(str(path)).card
        assert refit.encoding["repeat_bias"] == fit["repeat_bias"]
        assert refit.metrics["measured_by"].count("mtools.training.repeat_bias") == 1
    card = json.loads(path.with_suffix(".json").read_text())
    card["training"] = {"datasets": [str(tunes)]}
    write_card(card, path)
    with pytest.raises(UsageError, match="same data"):
        fit_repeat_bias(path, ["nottingham"])
    card["encoding"]["repeat_bias"] = 60.0  # continue reads it: every new note repeats the last
    write_card(card, path)
    played = run(["continue", "--model", path, "--primer", "60 _ 62", "--bars", "4", "--seed", "1",
                  "--to", "jsonl"])
    pitches = [n["pitch"] for n in sorted(json.loads(played.stdout)["notes"],
                                          key=lambda n: n.get("startTime", 0.0))]
    assert played.code == 0 and len(pitches) > 3 and pitches[:2] == [60, 62]
    assert set(pitches[2:]) == {62}


def test_drum_models_are_refused(tmp_path):
    path = tiny_event_model(tmp_path / "drums", family="drums_rnn")
    with pytest.raises(UsageError, match="melody"):
        fit_repeat_bias(path, ["groove"])
