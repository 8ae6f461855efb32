"""A prototype, for the benchmark only: `EventRnn.encode` vectorised over the
batch. mtools' own `encode` calls `LookbackEncoding.inputs` once per row
(a Python loop of many small numpy calls), which dominates generation at
batch 64. `BatchedEncodeRnn` gives the same inputs (checked by
`check_same`) from one set of numpy calls for the whole batch, to measure
what that change to src/mtools/models/{encoding,sequence}.py would buy.
"""

from __future__ import annotations

import numpy as np

from mtools.models.encoding import LookbackEncoding
from mtools.models.sequence import EventRnn, SearchOptions, generate


def batched_inputs(encoding: LookbackEncoding, ids: np.ndarray, start: int) -> np.ndarray:
    """LookbackEncoding.inputs for every row of ids (batch, steps) at once:
    → (batch, steps - start, input_size) float32."""
    ids = np.asarray(ids, dtype=np.int64)
    batch, steps = ids.shape
    positions = np.arange(start, steps)
    out = np.zeros((batch, len(positions), encoding.input_size), np.float32)
    rows, cols = np.arange(batch)[:, None], np.arange(len(positions))[None, :]
    out[rows, cols, ids[:, positions]] = 1.0
    column = encoding.num_events
    for distance in encoding.lookbacks:  # the event after the one `distance` back
        back = positions - distance + 1
        following = np.where(back >= 0, ids[:, np.maximum(back, 0)], encoding.default_id)
        out[rows, cols, column + following] = 1.0
        column += encoding.num_events
    step = positions + 1  # metric position of the next step
    for bit in range(encoding.counter_bits):
        out[:, :, column] = np.where((step >> bit) & 1, 1.0, -1.0)
        column += 1
    for distance in encoding.lookbacks:  # the current event repeats the one `distance` back
        back = positions - distance
        out[:, :, column] = (back >= 0) & (ids[:, np.maximum(back, 0)] == ids[:, positions])
        column += 1
    return out


class BatchedEncodeRnn(EventRnn):
    """An EventRnn (same session) whose `encode` is `batched_inputs`."""

    @classmethod
    def like(cls, rnn: EventRnn) -> BatchedEncodeRnn:
        return cls(rnn.session, layers=rnn.layers, hidden=rnn.hidden, encoding=rnn.encoding,
                   control_size=rnn.control_size)

    def encode(self, ids: np.ndarray, start: int, control: np.ndarray | None) -> np.ndarray:
        rows = batched_inputs(self.encoding, ids, start)
        if self.control_size:
            steps = np.arange(start, ids.shape[1]) + 1
            ahead = control[np.minimum(steps, len(control) - 1)]
            rows = np.concatenate([np.broadcast_to(ahead, rows.shape[:2] + ahead.shape[1:]),
                                   rows], axis=-1)
        return rows


def check_same(rnn: EventRnn, ids: np.ndarray, control: np.ndarray | None) -> None:
    """Raise AssertionError unless the prototype encodes like mtools (from
    the start and at the last position, for a batch of varied rows) and
    `generate` makes the same ids with it."""
    rng = np.random.default_rng(0)
    batch = np.stack([ids] + [rng.permutation(ids) for _ in range(3)])
    proto = BatchedEncodeRnn.like(rnn)
    for start in (0, batch.shape[1] - 1):
        assert np.array_equal(proto.encode(batch, start, control), rnn.encode(batch, start, control))
    made = [generate(model, ids, 16, num_outputs=4, options=SearchOptions(),
                     rng=np.random.default_rng(1), control=control) for model in (rnn, proto)]
    assert np.array_equal(*made)
