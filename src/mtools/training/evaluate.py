"""Scoring models on data: the figures `mtools eval` prints and model cards
record. Numpy and ONNX Runtime only (no torch), so any install can check a
card's claims."""

from __future__ import annotations

import math

from mtools.training.tasks import Example, ModelSpec, load_examples


def score_examples(model, examples: list[Example]) -> dict:
    """Teacher-forced NLL per predicted event (nats and bits) and next-event
    accuracy of an EventRnn over examples."""
    from mtools.models.sequence import score_sequences

    controls = [e.control for e in examples] if examples and examples[0].control is not None \
        else None
    nll, correct, count = score_sequences(model, [e.ids for e in examples], controls)
    if count == 0:
        return {"events": 0, "pieces": len(examples)}
    return {"nll_per_step": round(nll / count, 4), "bits_per_step": round(nll / count / math.log(2), 4),
            "accuracy": round(correct / count, 4), "events": count, "pieces": len(examples)}


def ngram_baseline(spec: ModelSpec, train: list[Example], valid: list[Example]) -> dict:
    """The interpolated n-gram baseline on the same events (best order on
    `valid`), NLL per predicted event in nats."""
    from mtools.training.ngram import best_ngram

    model, by_order = best_ngram([e.ids for e in train], [e.ids for e in valid],
                                 spec.encoding.num_events)
    return {"ngram_order": model.order, "ngram_nll_per_step": round(by_order[model.order], 4)}


def evaluate_sources(model, spec: ModelSpec, sources, part: str, progress=None) -> dict:
    """score_examples over the `part` split of sources."""
    return score_examples(model, load_examples(spec, sources, part, progress))
