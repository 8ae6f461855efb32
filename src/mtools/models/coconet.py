"""Coconet (Huang et al. 2017, "Counterpoint by Convolution"): four voices
on a 16th-note grid as a (time × pitch × voice) piano roll, and a
convolutional network that, given some cells and a mask of the others,
predicts every masked cell's pitch. Sampling is numpy around the ONNX graph:
blocked Gibbs with annealed masking (Yao et al. 2014) and orderless
ancestral sampling, batched over outputs.

A chorale here is an int array (steps, voices) of MIDI pitches, -1 for a
rest; voices are ordered from the top (soprano) down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REST = -1
PARALLEL_WEIGHT = 0.001  # GibbsOptions.parallel_weight's default
# The textbook SATB ranges (S C4-G5, A G3-D5, T C3-G4, B E2-C4), in the
# model's pitch space, and GibbsOptions.range_weight's default: a pitch is
# drawn this many times less often per semitone outside its voice's range.
VOICE_RANGES = ((60, 79), (55, 74), (48, 67), (40, 60))
RANGE_WEIGHT = 0.25
REPAIR_SWEEPS = 2  # passes over the cells still making parallels after sampling
GRAPH_INPUTS = ("pianoroll", "mask")
GRAPH_OUTPUTS = ("logits",)


@dataclass(frozen=True)
class ChoraleSpace:
    """The model's pitch range [min_pitch, max_pitch], its voices, and grid."""

    min_pitch: int = 36
    max_pitch: int = 81
    voices: tuple[str, ...] = ("soprano", "alto", "tenor", "bass")
    steps_per_quarter: int = 4

    @property
    def pitches(self) -> int:
        return self.max_pitch - self.min_pitch + 1

    @classmethod
    def from_card(cls, encoding: dict) -> ChoraleSpace:
        return cls(int(encoding["min_pitch"]), int(encoding["max_pitch"]),
                   tuple(encoding["voices"]), int(encoding["steps_per_quarter"]))

    def to_card(self) -> dict:
        return {"min_pitch": self.min_pitch, "max_pitch": self.max_pitch,
                "voices": list(self.voices), "steps_per_quarter": self.steps_per_quarter}

    def network_inputs(self, chorales: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's pianoroll (masked cells blanked) and mask (spread over
        pitch) for (batch, steps, voices) pitches and a boolean cell mask."""
        cells = np.repeat(mask[:, :, None, :], self.pitches, axis=2).astype(np.float32)
        return self.roll(np.where(mask, REST, chorales)), cells

    def roll(self, chorales: np.ndarray) -> np.ndarray:
        """(batch, steps, voices) pitches → (batch, steps, pitches, voices)
        one-hot float32 (rests and out-of-range pitches: all zero)."""
        index = chorales.astype(np.int64) - self.min_pitch
        valid = (chorales != REST) & (index >= 0) & (index < self.pitches)
        roll = np.zeros((*chorales.shape[:2], self.pitches, chorales.shape[2]), np.float32)
        b, t, v = np.nonzero(valid)
        roll[b, t, index[b, t, v], v] = 1.0
        return roll


def yao_schedule(iteration: int, iterations: int, *, pmin: float = 0.1, pmax: float = 0.9,
                 alpha: float = 0.7) -> float:
    """The share of cells to resample at `iteration` (Yao et al. 2014):
    falls linearly from pmax to pmin over the first alpha of the run."""
    return max(pmin, pmax - (pmax - pmin) * iteration / (alpha * iterations))


def softmax_pitch(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the pitch axis (axis 2) of (batch, steps, pitches, voices)."""
    scaled = logits / max(temperature, 1e-6)
    scaled = scaled - scaled.max(axis=2, keepdims=True)
    probs = np.exp(scaled)
    return probs / probs.sum(axis=2, keepdims=True)


def sample_pitches(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One pitch index per (batch, step, voice) from probs over axis 2."""
    cumulative = np.cumsum(np.moveaxis(probs, 2, -1), axis=-1)
    draws = rng.random(cumulative.shape[:-1] + (1,))
    return np.minimum((cumulative < draws).sum(axis=-1), probs.shape[2] - 1)


class Coconet:
    """A Coconet ONNX graph and its chorale space. `logits(chorales, mask)`
    runs the network on (batch, steps, voices) pitches with a boolean mask
    (batch, steps, voices) of the cells to predict."""

    def __init__(self, session, space: ChoraleSpace, radius: int | None = None):
        self.session, self.space, self.radius = session, space, radius

    @classmethod
    def from_ref(cls, ref, *, device: str | None = None, threads: int | None = None) -> Coconet:
        return cls(ref.load_session(device=device, threads=threads),
                   ChoraleSpace.from_card(ref.card.encoding),
                   receptive_radius(ref.card.hyperparameters))

    def logits(self, chorales: np.ndarray, mask: np.ndarray) -> np.ndarray:
        roll, cells = self.space.network_inputs(chorales, mask)
        return self.session.run({"pianoroll": roll, "mask": cells})["logits"]


def receptive_radius(hyperparameters: dict) -> int | None:
    """How many steps either side of a step can change its output: 1 for
    each of the first and last 3×3 convolutions, 2·d for each residual
    block of dilation d. None when the card does not say."""
    try:
        layers, dilations = int(hyperparameters["layers"]), list(hyperparameters["dilations"])
    except (KeyError, TypeError, ValueError):
        return None
    blocks = (layers - 2) // 2
    return 2 + sum(2 * dilations[i % len(dilations)] for i in range(blocks))


@dataclass(frozen=True)
class GibbsOptions:
    """iterations: blocked Gibbs steps after the first full fill;
    temperature: softmax temperature; sampler: "gibbs" (annealed blocked
    Gibbs, Yao schedule) or "ancestral" (one cell at a time in random order);
    parallel_weight: what the network's probability of a pitch is multiplied
    by for each parallel fifth or octave it would make with the cells around
    it as they stand (see parallel_counts), before the temperature: the
    weight drawn with is parallel_weight ** (1 / temperature);
    range_weight: likewise, per semitone a pitch lies outside its voice's
    VOICE_RANGES (left to the network, 1.4 % of the notes it wrote under
    the valid chorales' sopranos lay outside them, Bach's 0.45 %:
    benchmarks/results.md, bench_harmonize)."""

    iterations: int = 64
    temperature: float = 0.5
    sampler: str = "gibbs"
    parallel_weight: float = PARALLEL_WEIGHT  # 1: parallels drawn as the network likes them
    range_weight: float = RANGE_WEIGHT  # 1: ranges as the network likes them


def generate(model: Coconet, chorales: np.ndarray, free: np.ndarray, options: GibbsOptions,
             rng: np.random.Generator) -> np.ndarray:
    """Fill the cells where `free` (batch, steps, voices) is True; all other
    cells of `chorales` are kept exactly. Returns new pitches."""
    result = chorales.copy()
    result[free] = REST
    if not free.any():
        return result
    if options.sampler == "ancestral":
        _ancestral(model, result, free, options, rng)
    else:
        _resample(model, result, free, options, rng)  # the first fill: every free cell
        for iteration in range(options.iterations):
            share = yao_schedule(iteration, options.iterations)
            block = free & (rng.random(free.shape) < share)
            empty = ~block.reshape(len(block), -1).any(axis=1)
            for row in np.nonzero(empty & free.reshape(len(free), -1).any(axis=1))[0]:
                cells = np.argwhere(free[row])  # resample at least one cell per output
                block[row][tuple(cells[rng.integers(len(cells))])] = True
            _resample(model, result, block, options, rng)
    if options.parallel_weight < 1:
        _repair_parallels(model, result, free, options, rng)
    return result


def _repair_parallels(model: Coconet, chorales: np.ndarray, free: np.ndarray,
                      options: GibbsOptions, rng: np.random.Generator) -> None:
    """Resample free cells that make parallels, REPAIR_SWEEPS times: every
    other step at a time, one such cell a step, so no cell resampled
    together with one is a neighbour whose pitch the rule reads (a block
    of a Gibbs sweep sees the others as they stand: the rule is exact)."""
    space = model.space
    for _ in range(REPAIR_SWEEPS):
        for parity in (0, 1):
            counts = parallel_counts(chorales, space)
            index = np.clip(chorales - space.min_pitch, 0, space.pitches - 1)[:, :, None, :]
            offending = free & (np.take_along_axis(counts, index, axis=2)[:, :, 0] > 0)
            offending[:, 1 - parity::2] = False
            if not offending.any():
                continue
            keys = np.where(offending, rng.random(offending.shape), -1.0)
            block = offending & (keys == keys.max(axis=2, keepdims=True))  # one voice a step
            _resample(model, chorales, block, options, rng)


def _resample(model: Coconet, chorales: np.ndarray, block: np.ndarray,
              options: GibbsOptions, rng: np.random.Generator) -> None:
    probs = _weighed(model, chorales, model.logits(chorales, block), options)
    drawn = sample_pitches(probs, rng) + model.space.min_pitch
    chorales[block] = drawn[block]


def _weighed(model: Coconet, chorales: np.ndarray, logits: np.ndarray,
             options: GibbsOptions) -> np.ndarray:
    """The pitch probabilities to draw from: the network's, each multiplied
    by parallel_weight per parallel it would make and by range_weight per
    semitone outside its voice's range, renormalised, then sharpened by the
    temperature (the weights are applied to the logits, so a temperature
    below 1 sharpens them with the rest)."""
    if options.parallel_weight != 1:
        counts = parallel_counts(chorales, model.space)
        logits = logits + np.float32(np.log(max(options.parallel_weight, 1e-30))) * counts
    if options.range_weight != 1:
        logits = logits + np.float32(np.log(max(options.range_weight, 1e-30))) * \
            semitones_outside(model.space)
    return softmax_pitch(logits, options.temperature)


def semitones_outside(space: ChoraleSpace) -> np.ndarray:
    """(pitches, voices) float32: how far each pitch of the model's range
    lies outside each voice's VOICE_RANGES, in semitones (0 inside)."""
    pitches = np.arange(space.min_pitch, space.max_pitch + 1)[:, None]
    low, high = (np.array([r[i] for r in VOICE_RANGES[:len(space.voices)]]) for i in (0, 1))
    return (np.maximum(low - pitches, 0) + np.maximum(pitches - high, 0)).astype(np.float32)


def parallel_counts(chorales: np.ndarray, space: ChoraleSpace) -> np.ndarray:
    """(batch, steps, pitches, voices): how many parallel fifths or octaves
    (unisons included) each pitch of the model's range would make at each
    cell, with the other voices and the steps before and after as they are.
    Two voices make one where both move, the same way, from a perfect fifth
    or octave (mod 12) to the same again (what a chorale teacher marks;
    benchmarks/bench_harmonize.py counts it the same way)."""
    batch, steps, voices = chorales.shape
    candidates = np.arange(space.min_pitch, space.max_pitch + 1)[None, None, :]  # (1, 1, P)
    counts = np.zeros((batch, steps, len(candidates[0, 0]), voices), np.int8)
    sounding = chorales != REST
    for v in range(voices):
        for u in range(voices):
            if u == v:
                continue
            upper_first = 1 if v < u else -1  # intervals are measured from the upper voice down
            other = chorales[:, :, u][:, :, None]  # (batch, steps, 1)
            ok_other = sounding[:, :, u][:, :, None]
            now = (upper_first * (candidates - other)) % 12  # (batch, steps, P)
            perfect_now = ((now == 0) | (now == 7)) & ok_other
            # into the cell: step t - 1 -> t
            before_v, before_u = chorales[:, :-1, v][:, :, None], other[:, :-1]
            then = (upper_first * (before_v - before_u)) % 12
            ok = sounding[:, :-1, v][:, :, None] & ok_other[:, :-1] & perfect_now[:, 1:]
            move_v, move_u = candidates - before_v, other[:, 1:] - before_u
            into = ok & (then == now[:, 1:]) & (move_v * move_u > 0)
            counts[:, 1:, :, v] += into
            # out of the cell: step t -> t + 1
            after_v, after_u = chorales[:, 1:, v][:, :, None], other[:, 1:]
            next_ = (upper_first * (after_v - after_u)) % 12
            ok = sounding[:, 1:, v][:, :, None] & ok_other[:, 1:] & perfect_now[:, :-1]
            move_v, move_u = after_v - candidates, after_u - other[:, :-1]
            out = ok & (next_ == now[:, :-1]) & (move_v * move_u > 0)
            counts[:, :-1, :, v] += out
    return counts


def _ancestral(model: Coconet, chorales: np.ndarray, free: np.ndarray, options: GibbsOptions,
               rng: np.random.Generator) -> np.ndarray:
    """Orderless NADE sampling: each output's free cells in its own random
    order, one cell per network call, conditioned on all cells so far."""
    pending = free.copy()
    orders = [rng.permutation(np.argwhere(row)) for row in free]
    for position in range(max(len(order) for order in orders)):
        probs = _weighed(model, chorales, model.logits(chorales, pending), options)
        for row, order in enumerate(orders):
            if position < len(order):
                t, v = order[position]
                pitch = sample_pitches(probs[row:row + 1, t:t + 1, :, v:v + 1], rng)[0, 0, 0]
                chorales[row, t, v] = pitch + model.space.min_pitch
                pending[row, t, v] = False
    return chorales


def framewise_nll(model: Coconet, chorales: list[np.ndarray], *, samples: int,
                  rng: np.random.Generator) -> dict:
    """Monte Carlo estimate of the frame-wise NLL under random orderings:
    frames come in a random order and each frame's voices in a random
    order; a frame's cost is the sum over its voices of -log p(true pitch)
    given every earlier frame in the ordering and the frame's earlier voices
    (ground truth). A draw takes a uniform position k in a random ordering:
    the k frames before it are context, and the frame at k is scored. Each
    piece gets `samples` draws, weighted by its number of frames, so
    frame_nll estimates the mean NLL per frame over all frames (nats) and
    note_nll the mean per sounding voice cell."""
    total_cost = total_notes = total_weight = 0.0
    for chorale in chorales:
        steps, voices = chorale.shape
        width = steps if model.radius is None else min(steps, 2 * model.radius + 1)
        mask = np.ones((samples, steps, voices), bool)
        target = np.empty(samples, np.int64)
        for row in range(samples):
            order = rng.permutation(steps)
            context = int(rng.integers(steps))
            mask[row, order[:context]] = False
            target[row] = order[context]
        # Each draw needs only the steps its target can see: a window of the
        # receptive field, clipped to the piece (exact, and much cheaper).
        starts = np.clip(target - (width - 1) // 2, 0, steps - width)
        window = starts[:, None] + np.arange(width)
        rows = np.arange(samples)
        batch = chorale[window]  # (samples, width, voices)
        mask = mask[rows[:, None], window]
        local = target - starts
        cost, notes = np.zeros(samples), np.zeros(samples)
        voice_orders = np.array([rng.permutation(voices) for _ in rows])
        for voice in voice_orders.T:
            pitch = batch[rows, local, voice]
            sounding = pitch != REST
            logp = _log_softmax_pitch(model.logits(batch, mask))
            index = np.clip(pitch - model.space.min_pitch, 0, model.space.pitches - 1)
            nll = -logp[rows, local, index, voice]
            cost += np.where(sounding, nll, 0.0)
            notes += sounding
            mask[rows, local, voice] = False  # the voice is now known context
        weight = steps / samples
        total_cost += weight * cost.sum()
        total_notes += weight * notes.sum()
        total_weight += weight * samples
    return {"frame_nll": total_cost / total_weight, "note_nll": total_cost / max(total_notes, 1e-9),
            "frames_scored": samples * len(chorales)}


def framewise_figures(model: Coconet, chorales: list[np.ndarray], samples: int) -> dict:
    """framewise_nll with a fixed seed, rounded for cards and `mtools eval`."""
    figures = framewise_nll(model, chorales, samples=samples, rng=np.random.default_rng(0))
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
            "pieces": len(chorales), "samples_per_piece": samples}


def _log_softmax_pitch(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=2, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
