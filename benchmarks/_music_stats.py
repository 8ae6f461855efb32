"""Musical statistics of continuations, piece by piece, for
bench_continue_stats.py: melodies as notes on the step grid, drum tracks as
bitmask events with velocities. Each piece is the primer followed by its
continuation; statistics look at the continuation [start, end) (steps),
and repetition compares it with everything before it, primer included.

The "close?" rule: a per-piece statistic is close when the model's mean
lies within half a standard deviation of the data's pieces from the data's
mean (|Δ| ≤ 0.5·SD, a small effect size; a statistic the data never varies
must match exactly); the interval histograms are close when their total
variation distance is at most TV_CLOSE.
"""

from __future__ import annotations

import math

import numpy as np

HOLD, REST = -2, -1  # grid tokens besides a pitch (a note starting on that step)
LOWEST_KEY, HIGHEST_KEY = 21, 108  # the piano's keys, A0..C8
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
INTERVAL_CLIP = 13  # intervals beyond an octave share one bin per side
TV_CLOSE = 0.10
EFFECT_CLOSE = 0.5
DRUM_CLASS_NAMES = ("kick", "snare", "closed hi-hat", "open hi-hat", "low tom", "mid tom",
                    "high tom", "crash", "ride")

Notes = list[tuple[int, int, int]]  # (pitch, start step, end step)


def grid_tokens(notes: Notes, total: int) -> np.ndarray:
    """One token per step: the pitch of a note starting there, HOLD while a
    note sounds, REST otherwise. (total,) int64."""
    tokens = np.full(total, REST, dtype=np.int64)
    for pitch, start, end in sorted(notes, key=lambda n: n[1]):
        if start < total:
            tokens[start + 1:min(end, total)] = HOLD
            tokens[start] = pitch
    return tokens


def repeated_windows(rows: np.ndarray, start: int, end: int, window: int, hop: int) -> float:
    """Fraction of the windows of `window` steps that start at start,
    start + hop, ... (ending by `end`) and equal an earlier window starting
    on a multiple of hop; rows (steps, ...) compared exactly."""
    starts = range(start, end - window + 1, hop)
    if not len(starts):
        return math.nan
    repeated = 0
    for first in starts:
        current = rows[first:first + window]
        repeated += any(np.array_equal(current, rows[u:u + window]) for u in range(0, first, hop))
    return repeated / len(starts)


def melody_stats(notes: Notes, start: int, end: int, steps_per_bar: int,
                 key: int) -> tuple[dict[str, float], np.ndarray]:
    """Statistics of the notes starting in [start, end) and their successive
    pitch intervals. `key` is the primer's major key (0 = C)."""
    new = sorted((n for n in notes if start <= n[1] < end), key=lambda n: n[1])
    pitches = np.array([n[0] for n in new], dtype=np.int64)
    lengths = np.array([min(n[2], end) - n[1] for n in new], dtype=np.int64)
    tokens = grid_tokens(notes, end)
    bars = (end - start) / steps_per_bar
    has = len(pitches) > 0
    stats = {
        "notes per bar": len(new) / bars,
        "pitch range (max − min), semitones": float(np.ptp(pitches)) if has else math.nan,
        "mean pitch (MIDI)": float(pitches.mean()) if has else math.nan,
        "fraction of steps sounding": float(np.mean(tokens[start:end] != REST)),
        "2-bar windows repeating an earlier one": repeated_windows(
            tokens, start, end, 2 * steps_per_bar, steps_per_bar),
        "notes in the primer's major scale": float(np.isin(
            (pitches - key) % 12, MAJOR_SCALE).mean()) if has else math.nan,
        "longest note, steps": float(lengths.max()) if has else math.nan,
        "notes longer than 2 bars, per piece": float(np.sum(lengths > 2 * steps_per_bar)),
        "notes outside 21..108, per piece": float(np.sum((pitches < LOWEST_KEY)
                                                         | (pitches > HIGHEST_KEY))),
        "continuations with no note": float(not has),
    }
    return stats, np.diff(pitches)


def drum_stats(events: np.ndarray, velocities: np.ndarray | None, start: int, end: int,
               steps_per_bar: int) -> dict[str, float]:
    """Statistics of bitmask events [start, end): hits per bar per class,
    busy steps, repeated bars, and the velocities of the hits."""
    events = np.asarray(events, dtype=np.int64)
    new = events[start:end]
    bars = (end - start) / steps_per_bar
    struck = (new[:, None] >> np.arange(len(DRUM_CLASS_NAMES))) & 1
    stats = {f"{name} hits per bar": float(struck[:, i].sum() / bars)
             for i, name in enumerate(DRUM_CLASS_NAMES)}
    stats["fraction of steps with any hit"] = float(np.mean(new != 0))
    stats["bars repeating an earlier 1-bar pattern"] = repeated_windows(
        events, start, end, steps_per_bar, steps_per_bar)
    hits = velocities[start:end][velocities[start:end] > 0] if velocities is not None else []
    stats["velocity of hits: mean"] = float(np.mean(hits)) if len(hits) else math.nan
    stats["velocity of hits: std"] = float(np.std(hits)) if len(hits) else math.nan
    return stats


def summarize(pieces: list[dict[str, float]]) -> dict[str, tuple[float, float, int]]:
    """Per statistic: (mean, standard deviation, pieces counted) over the
    pieces where it is defined."""
    out = {}
    for name in pieces[0] if pieces else ():
        values = np.array([p[name] for p in pieces], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[name] = (float(values.mean()) if len(values) else math.nan,
                     float(values.std()) if len(values) else math.nan, len(values))
    return out


def interval_histogram(intervals: list[np.ndarray]) -> np.ndarray:
    """Pooled successive-interval distribution, clipped to ±INTERVAL_CLIP."""
    pooled = np.concatenate([np.clip(i, -INTERVAL_CLIP, INTERVAL_CLIP) for i in intervals]
                            or [np.zeros(0, np.int64)])
    counts = np.bincount(pooled + INTERVAL_CLIP, minlength=2 * INTERVAL_CLIP + 1)
    return counts / max(counts.sum(), 1)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def close_cell(data: tuple[float, float, int], other: tuple[float, float, int]) -> str:
    """"yes"/"NO" by the effect-size rule, with d = |Δ| / SD(data)."""
    (mean, sd, _), (value, _, _) = data, other
    if math.isnan(mean) or math.isnan(value):
        return "—"
    gap = abs(value - mean)
    if sd == 0:
        return "yes (equal)" if gap == 0 else "NO (data never varies)"
    d = gap / sd
    return f"{'yes' if d <= EFFECT_CLOSE else 'NO'} (d={d:.2f})"


def cell(stat: tuple[float, float, int]) -> str:
    """`mean ± sd` for a table cell."""
    mean, sd, _ = stat
    if math.isnan(mean):
        return "—"
    digits = 2 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"
