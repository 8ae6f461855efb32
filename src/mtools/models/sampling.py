"""Sampling over logits: small numpy pieces shared by every sampling model.

All functions work on a batch: logits (batch, classes) float. Randomness
comes only from the numpy Generator passed in, so a seed reproduces a run
bit for bit.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import numpy as np

SEED_RANGE = 2**31  # a drawn seed is below this: short enough to copy into --seed


def seeded(options: Any) -> Any:
    """`options` (a dataclass with a `seed`) with a seed: its own, else a
    fresh random one, so the output's provenance names the seed that
    reproduces it."""
    if options.seed is not None:
        return options
    return dataclasses.replace(options, seed=secrets.randbelow(SEED_RANGE))


def numbered_takes(scores: list) -> list:
    """Scores made together from one seed (`-n N`), each with its place in
    the set in its provenance ("take" k of "takes" N): the seed makes the
    whole set again, so `--seed S -n N` and take k give one back."""
    if len(scores) < 2:
        return scores
    return [dataclasses.replace(score, provenance={**score.provenance, "take": index + 1,
                                                   "takes": len(scores)})
            for index, score in enumerate(scores)]


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
    log_probs = np.asarray(log_probs)
    return inverse_cdf(np.exp(log_probs - log_probs.max(axis=-1, keepdims=True)),
                       rng.random(len(log_probs)))


def sample_logits(logits: np.ndarray, temperature: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One class per row of logits / temperature (batch, classes), with its
    log-probability: ((batch,) int64, (batch,) float64). What a sampling
    loop needs per step, in float32 over the whole row (exp in float64 costs
    three times as much at 512 classes) and float64 for the chosen ones."""
    scaled = np.asarray(logits, dtype=np.float32) / np.float32(max(temperature, 1e-6))
    scaled -= scaled.max(axis=-1, keepdims=True)
    probs = np.exp(scaled)
    classes, totals = inverse_cdf(probs, rng.random(len(probs)), with_totals=True)
    chosen = scaled[np.arange(len(classes)), classes].astype(np.float64)
    return classes, chosen - np.log(totals)


BLOCKS_ABOVE = 64  # classes; fewer are summed in one pass
BLOCKS_ABOVE_CELLS = 8192  # rows × classes; fewer are summed in one pass too


def inverse_cdf(weights: np.ndarray, draws: np.ndarray, with_totals: bool = False,
                blocks: bool | None = None):
    """For each row of non-negative weights (batch, classes), not all zero,
    the class where the running sum first exceeds draw × the row's total
    (draws (batch,) in [0, 1)): a class of positive weight, chosen with
    probability weight / total. Over more than BLOCKS_ABOVE classes and
    BLOCKS_ABOVE_CELLS weights in all (or when `blocks` says so) the sum
    runs over blocks of about √classes first and then inside the chosen
    block: two short cumulative sums instead of one over every class
    (numpy's cumsum is a plain loop: at 64 × 512 it outweighed the network
    step; the block sums are a matrix-vector product, as fast). Fewer
    weights are summed in one pass: the blocks' dozen numpy calls cost more
    (on a 2-core EPYC, 1 × 512: 56 µs in blocks, 21 µs in one pass; 16 ×
    512 about even). With `with_totals`, also each row's total (batch,)
    float64."""
    batch, classes = weights.shape
    if blocks is None:
        blocks = classes > BLOCKS_ABOVE and weights.size > BLOCKS_ABOVE_CELLS
    if not blocks:
        cdf = np.cumsum(weights, axis=-1, dtype=np.float64)
        totals = cdf[:, -1]
        classes = _first_past(cdf, np.asarray(draws, np.float64) * totals, weights)
        return (classes, totals) if with_totals else classes
    width = int(np.ceil(np.sqrt(classes)))
    count = -(-classes // width)  # blocks
    padded = np.zeros((batch, count * width), weights.dtype)
    padded[:, :classes] = weights
    padded = padded.reshape(batch, count, width)
    block_sums = (padded @ np.ones(width, padded.dtype)).astype(np.float64)
    block_cdf = np.cumsum(block_sums, axis=-1)
    totals = block_cdf[:, -1]
    targets = np.asarray(draws, np.float64) * totals
    rows = np.arange(batch)
    block = _first_past(block_cdf, targets, block_sums)
    inside = padded[rows, block]  # (batch, width)
    # what the blocks before hold, read off the same running sum that chose
    # the block (a difference of sums can round past it)
    before = np.where(block > 0, block_cdf[rows, np.maximum(block - 1, 0)], 0.0)
    index = _first_past(np.cumsum(inside, axis=-1, dtype=np.float64), targets - before, inside)
    classes = block * width + index
    return (classes, totals) if with_totals else classes


def _first_past(cdf: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row, the first index where cdf exceeds the target: a class of
    positive weight. Rounding can leave a target at or past the row's end;
    then the row's last class of positive weight."""
    index = (cdf <= targets[:, None]).sum(axis=-1)
    last = np.where(weights > 0, np.arange(weights.shape[1]), -1).max(axis=-1)
    return np.minimum(index, last)


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
