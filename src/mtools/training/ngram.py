"""A count-based baseline for event models: an interpolated n-gram over
event ids with Witten-Bell smoothing, trained on the same pieces and scored
on the same next events as the networks (`mtools eval`), so that every
model card can say how far the network beats counting.

    P(w | h) = (c(h, w) + n(h) · P(w | h')) / (c(h) + n(h))

where h' drops the oldest event of h, c counts occurrences and n(h) is the
number of distinct events seen after h; the recursion ends in an add-one
unigram. Contexts are hashed into int64 codes (numpy, vectorised).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MULTIPLIER = np.int64(1_000_003)  # context hash: code * M + id + 1 (wraps in int64)
START_ID = -1  # padding before a piece starts: contexts at its start are shorter


@dataclass
class _Table:
    """Counts for one context length: sorted unique context codes with
    c(h) and n(h), and sorted unique (context, next) codes with c(h, w)."""

    contexts: np.ndarray
    context_counts: np.ndarray
    distinct_next: np.ndarray
    pairs: np.ndarray
    pair_counts: np.ndarray


def _context_codes(padded: np.ndarray, order: int, length: int) -> np.ndarray:
    """Hash of the `order` ids before each of `length` positions of a padded
    sequence (positions start after `order` padding ids)."""
    codes = np.zeros(length, dtype=np.int64)
    with np.errstate(over="ignore"):
        for back in range(order, 0, -1):
            codes = codes * _MULTIPLIER + padded[order - back: order - back + length] + 2
    return codes


def _pair_codes(contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return contexts * _MULTIPLIER + targets + 2


class NGram:
    """Witten-Bell interpolated n-gram of `order` (context length order - 1)
    over ids 0..num_events-1."""

    def __init__(self, num_events: int, order: int):
        self.num_events, self.order = num_events, order
        self.tables: list[_Table] = []
        self.unigram = np.ones(num_events) / num_events

    def fit(self, sequences: list[np.ndarray]) -> NGram:
        """Count every (context, next) pair in the sequences."""
        targets = np.concatenate([np.asarray(s, np.int64) for s in sequences])
        counts = np.bincount(targets, minlength=self.num_events) + 1.0
        self.unigram = counts / counts.sum()
        self.tables = []
        for length in range(1, self.order):
            contexts = self._contexts(sequences, length)
            pairs = _pair_codes(contexts, targets)
            unique_pairs, pair_counts = np.unique(pairs, return_counts=True)
            unique_contexts, context_counts = np.unique(contexts, return_counts=True)
            pair_contexts = np.unique(np.stack([contexts, targets]), axis=1)[0]
            owners, distinct = np.unique(pair_contexts, return_counts=True)
            distinct_next = distinct[np.searchsorted(owners, unique_contexts)]
            self.tables.append(_Table(unique_contexts, context_counts, distinct_next,
                                      unique_pairs, pair_counts))
        return self

    @staticmethod
    def _contexts(sequences: list[np.ndarray], length: int) -> np.ndarray:
        """Context codes of every position of every sequence (start-padded)."""
        parts = []
        for seq in sequences:
            seq = np.asarray(seq, np.int64)
            padded = np.concatenate([np.full(length, START_ID, np.int64), seq])
            parts.append(_context_codes(padded, length, len(seq)))
        return np.concatenate(parts)

    def log_prob(self, sequences: list[np.ndarray]) -> np.ndarray:
        """ln P of every event of every sequence given its history (the
        first event of each given only the start): (total events,)."""
        targets = np.concatenate([np.asarray(s, np.int64) for s in sequences])
        prob = self.unigram[targets]
        for length, table in enumerate(self.tables, start=1):
            contexts = self._contexts(sequences, length)
            c_h, n_h = _lookup(table.contexts, contexts, table.context_counts, table.distinct_next)
            c_hw = _lookup(table.pairs, _pair_codes(contexts, targets), table.pair_counts)[0]
            seen = c_h > 0
            prob = np.where(seen, (c_hw + n_h * prob) / np.maximum(c_h + n_h, 1), prob)
        return np.log(prob)


def _lookup(keys: np.ndarray, queries: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """values[i][position of query in sorted keys], or 0 where absent."""
    where = np.searchsorted(keys, queries)
    where = np.minimum(where, len(keys) - 1)
    found = keys[where] == queries
    return tuple(np.where(found, v[where], 0).astype(np.float64) for v in values)


def best_ngram(train: list[np.ndarray], valid: list[np.ndarray], num_events: int,
               orders=range(1, 11)) -> tuple[NGram, dict[int, float]]:
    """Fit each order on `train`, score the next events of `valid` (each
    sequence's first event excluded, as the networks predict from it);
    returns the best model and NLL per event (nats) for every order."""
    results, best = {}, None
    for order in orders:
        model = NGram(num_events, order).fit(train)
        results[order] = next_event_nll(model, valid)
        if best is None or results[order] < results[best.order]:
            best = model
    return best, results


def next_event_nll(model: NGram, sequences: list[np.ndarray]) -> float:
    """Mean NLL (nats) of events 1.. of each sequence, the events the
    networks are scored on."""
    log_probs = model.log_prob(sequences)
    keep = np.concatenate([np.arange(len(s)) > 0 for s in sequences])
    return float(-log_probs[keep].mean())
