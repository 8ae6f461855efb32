"""Sampling over logits: small numpy pieces shared by every sampling model.

All functions work on a batch: logits (batch, classes) float. Randomness
comes only from the numpy Generator passed in, so a seed reproduces a run
bit for bit.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Log-probabilities of logits / temperature along the last axis, in
    float64 (sums of many of them are compared in beam search). A
    temperature of 0 is treated as a tiny one (greedy up to ties)."""
    scaled = np.asarray(logits, dtype=np.float64) / max(temperature, 1e-6)
    scaled -= scaled.max(axis=-1, keepdims=True)
    return scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))


def sample_categorical(log_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row from log-probabilities (batch, classes) → (batch,)
    int64, by inverse-CDF sampling (one uniform draw per row)."""
    probs = np.exp(log_probs)
    cdf = np.cumsum(probs, axis=-1)
    draws = rng.random(len(probs)) * cdf[:, -1]
    chosen = (cdf < draws[:, None]).sum(axis=-1)
    return np.minimum(chosen, probs.shape[-1] - 1)


def top_k_mask(log_probs: np.ndarray, k: int) -> np.ndarray:
    """Keep the k most likely classes of each row (others -inf), renormalised."""
    if k <= 0 or k >= log_probs.shape[-1]:
        return log_probs
    threshold = np.sort(log_probs, axis=-1)[:, -k][:, None]
    kept = np.where(log_probs >= threshold, log_probs, -np.inf)
    return kept - np.logaddexp.reduce(kept, axis=-1, keepdims=True)


def best_rows(scores: np.ndarray, groups: int, keep: int) -> np.ndarray:
    """Row indices of the `keep` highest scores within each of `groups`
    equal, consecutive groups of rows: scores (groups * size,) →
    (groups * keep,) int64, group by group, best first (stable on ties)."""
    size = len(scores) // groups
    by_group = scores.reshape(groups, size)
    order = np.argsort(-by_group, axis=1, kind="stable")[:, :keep]
    return (order + np.arange(groups)[:, None] * size).reshape(-1)
