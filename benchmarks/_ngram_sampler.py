"""Sampling from mtools' interpolated n-gram (mtools.training.ngram), which
only scores sequences: the next-event distribution of a whole batch of
histories at once, from the model's count tables, checked against
`NGram.log_prob`."""

from __future__ import annotations

import numpy as np

from mtools.models.sampling import sample_categorical
from mtools.training.ngram import _MULTIPLIER, START_ID, NGram, _lookup, _pair_codes


def fit(spec, sources: list[str], order: int) -> NGram:
    """An n-gram of `order` over the training split of `sources`."""
    from mtools.training.tasks import load_examples

    train = [example.ids for example in load_examples(spec, sources, "train")]
    model = NGram(spec.encoding.num_events, order).fit(train)
    _check(model, train[:3])
    return model


def next_probs(model: NGram, histories: np.ndarray) -> np.ndarray:
    """P(next event | history) for histories (batch, order - 1) of the
    latest ids, START_ID-padded on the left: → (batch, num_events)."""
    batch = len(histories)
    events = np.arange(model.num_events)
    probs = np.broadcast_to(model.unigram, (batch, model.num_events)).copy()
    for length, table in enumerate(model.tables, start=1):
        codes = np.zeros(batch, dtype=np.int64)
        with np.errstate(over="ignore"):
            for column in range(histories.shape[1] - length, histories.shape[1]):
                codes = codes * _MULTIPLIER + histories[:, column] + 2
        seen, distinct = _lookup(table.contexts, codes, table.context_counts, table.distinct_next)
        pairs = _pair_codes(codes[:, None], events[None, :]).reshape(-1)
        joint = _lookup(table.pairs, pairs, table.pair_counts)[0].reshape(batch, -1)
        mixed = (joint + distinct[:, None] * probs) / np.maximum(seen + distinct, 1)[:, None]
        probs = np.where(seen[:, None] > 0, mixed, probs)
    return probs


def sample(model: NGram, primers: list[np.ndarray], steps: int,
           rng: np.random.Generator) -> list[np.ndarray]:
    """Each primer (ids) extended by `steps` sampled ids."""
    width = max(model.order - 1, 1)
    history = np.stack([_last(primer, width) for primer in primers])
    new = np.zeros((len(primers), steps), dtype=np.int64)
    for step in range(steps):
        chosen = sample_categorical(np.log(next_probs(model, history)), rng)
        new[:, step] = chosen
        history = np.concatenate([history[:, 1:], chosen[:, None]], axis=1)
    return [np.concatenate([np.asarray(p, np.int64), row]) for p, row in zip(primers, new)]


def _last(ids: np.ndarray, width: int) -> np.ndarray:
    """The last `width` ids, START_ID-padded on the left."""
    ids = np.asarray(ids, np.int64)[-width:]
    return np.concatenate([np.full(width - len(ids), START_ID, np.int64), ids])


def _check(model: NGram, sequences: list[np.ndarray]) -> None:
    """Raise AssertionError unless next_probs agrees with NGram.log_prob on
    the last event of some training sequences."""
    for seq in sequences:
        seq = np.asarray(seq, np.int64)[:40]
        if len(seq) < 2:
            continue
        expected = model.log_prob([seq])[-1]
        got = np.log(next_probs(model, _last(seq[:-1], max(model.order - 1, 1))[None])[0, seq[-1]])
        assert abs(expected - got) < 1e-9, (expected, got)
