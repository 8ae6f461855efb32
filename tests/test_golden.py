"""Every bundled model still computes what it did when it was bundled
(see tests/golden_outputs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from golden_outputs import FAMILIES, GOLDEN_DIR, LOGIT_TOLERANCE, PRIMERS, golden_run
from mtools.models.registry import list_models, resolve_model

CARDS = [card for card in list_models() if card.name in FAMILIES]


@pytest.mark.parametrize("card", CARDS, ids=lambda card: card.spec)
def test_bundled_model_matches_its_golden_output(card):
    path = GOLDEN_DIR / f"{card.stem}.json"
    assert path.exists(), f"no golden output for {card.spec}: run python tests/golden_outputs.py"
    want = json.loads(path.read_text())
    assert want["sha256"] == card.sha256, \
        f"{card.spec} was re-exported: run python tests/golden_outputs.py"
    got = golden_run(resolve_model(card.spec))
    np.testing.assert_allclose(got["first_logits"], want["first_logits"], atol=LOGIT_TOLERANCE)
    assert got["greedy_ids"] == want["greedy_ids"]
    assert got.get("fitted_ids") == want.get("fitted_ids")  # MusicVAE's latent search


def test_every_continue_family_has_a_golden_primer():
    assert {card.name for card in list_models() if card.task == "continue"} <= set(PRIMERS)


def test_every_bundled_card_names_its_network_in_one_whole_sentence():
    # the card's architecture is the first sentence of a network's docstring
    # (what export writes now); older exports cut it at "et al." or kept
    # the docstring's line breaks
    pytest.importorskip("torch")
    from mtools.training.export import architecture
    from mtools.training.nets import MODULES

    sentences = {architecture(module) for module in MODULES.values()}
    for card in list_models():
        text = card.hyperparameters.get("architecture")
        assert text is None or text in sentences, f"{card.spec}: {text!r}"
