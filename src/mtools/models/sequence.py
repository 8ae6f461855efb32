"""Event RNNs on ONNX Runtime: teacher-forced scoring and batched generation
(sampling and Magenta's beam search) for every model whose network is an
LSTM over encoded events (Melody, Drums, Improv, later Performance and
Polyphony RNN).

The graph contract (names checked at load, dims read from the card):

    inputs  (batch, time, input_size) float32
    state_h (layers, batch, hidden)   float32
    state_c (layers, batch, hidden)   float32
    (more states, e.g. attention ones, as the card's state_shapes lists)
    → logits (batch, time, num_classes), state_h_out, state_c_out, ...

A card with `step_only` has a graph of one time step (attention_rnn); a
longer input is then fed step by step. A card's `ring_states` (attention
states: batch, slots, ...) are kept as a ring: the graph outputs only the
step it pushes (NAME_push, (batch, 1, ...)) and the runtime writes it over
the oldest slot in place, instead of the graph returning the state shifted
by one (see mtools.training.ring). The slot order does not matter to the
attention, so both compute the same.

A card's `encoding.repeat_bias` (melody models; fitted on the training
split by mtools.training.repeat_bias) is added to the logit of every class
that would repeat the last pitch played, before the temperature, in
generation and scoring alike: it is part of the model's distribution.

Conditioning signals known in advance (Improv RNN's chords) are `control`
rows: the input for position t is control[t + 1] followed by the encoded
events up to t (Magenta's ConditionalEventSequenceEncoderDecoder layout).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from mtools.models.encoding import MELODY_SPECIAL_IDS, LookbackEncoding
from mtools.models.sampling import best_rows, log_softmax, sample_logits

LSTM_STATES = ("state_h", "state_c")
BATCH = -1  # marks the batch axis in a card's state_shapes
PUSH_SUFFIX = "_push"  # a ring state's graph output: the step it pushes
RING_STEP = "ring_step"  # in a state with ring states: steps run so far (int)


def state_shapes(config: dict, names=LSTM_STATES) -> dict[str, list[int]]:
    """The card's `state_shapes` for a network config: each state input's
    shape with BATCH at its batch axis (LSTM states are (layers, batch,
    hidden); attention states are batch-first)."""
    layers, hidden = config["layers"], config["hidden"]
    shapes = {"state_h": [layers, BATCH, hidden], "state_c": [layers, BATCH, hidden],
              "attention": [BATCH, hidden],
              "attention_states": [BATCH, config.get("attn_length", 0), hidden],
              "attention_keys": [BATCH, config.get("attn_length", 0), hidden]}
    return {name: shapes[name] for name in names}


class EventRnn:
    """A loaded event RNN: `session` (mtools.runtime.Session), the card's
    state shapes (see `state_shapes`), its encoding, the size of its
    control rows, whether the graph takes one step per call, the logit
    offset of classes repeating the last pitch and the states kept as a
    ring (see the module's text)."""

    def __init__(self, session, *, shapes: dict[str, list[int]], encoding: LookbackEncoding,
                 control_size: int = 0, step_only: bool = False, repeat_bias: float = 0.0,
                 ring: tuple[str, ...] = ()):
        self.session = session
        self.shapes = shapes
        self.encoding = encoding
        self.control_size = control_size
        self.step_only = step_only
        self.repeat_bias = repeat_bias
        self.ring = tuple(ring)
        if self.ring and (not step_only or any(shapes[name][0] != BATCH for name in self.ring)):
            raise ValueError(f"ring states need a one-step graph and the batch first: {self.ring}")

    @classmethod
    def from_ref(cls, ref, *, device: str | None = None, threads: int | None = None) -> EventRnn:
        """Load a registry model (mtools.models.registry.ModelRef); device and
        threads as for mtools.runtime.load_session."""
        from mtools.models.key_encoding import encoding_from_card

        card = ref.card
        hyper = card.hyperparameters
        shapes = hyper.get("state_shapes") or state_shapes(hyper)
        return cls(ref.load_session(device=device, threads=threads), shapes=shapes,
                   encoding=encoding_from_card(card.encoding),
                   control_size=int(card.encoding.get("control_size", 0)),
                   step_only=bool(hyper.get("step_only", False)),
                   repeat_bias=float(card.encoding.get("repeat_bias", 0.0)),
                   ring=tuple(hyper.get("ring_states", ())))

    def with_session(self, session) -> EventRnn:
        """This model run by another session of its graph (other threads,
        or the same graph with other weights)."""
        twin = copy.copy(self)
        twin.session = session
        return twin

    def zero_state(self, batch: int) -> dict:
        state = {name: np.zeros([batch if d == BATCH else d for d in shape], np.float32)
                 for name, shape in self.shapes.items()}
        if self.ring:
            state[RING_STEP] = 0
        return state

    def take(self, state: dict, rows: np.ndarray) -> dict:
        """The state of batch rows `rows` (a gather along each batch axis;
        new arrays, so the original state stays usable)."""
        return {name: np.take(value, rows, axis=self.shapes[name].index(BATCH))
                if name in self.shapes else value for name, value in state.items()}

    def run(self, inputs: np.ndarray, state: dict):
        """inputs (batch, time, input_size) → logits (batch, time, classes),
        state. Ring states are written in place: the state passed in is
        used up (`take` copies one that must be kept)."""
        inputs = inputs.astype(np.float32, copy=False)
        if self.step_only and inputs.shape[1] != 1:
            logits = []
            for t in range(inputs.shape[1]):
                step_logits, state = self.run(inputs[:, t:t + 1], state)
                logits.append(step_logits)
            return np.concatenate(logits, axis=1), state
        out = self.session.run({"inputs": inputs, **{name: state[name] for name in self.shapes}})
        new = {name: out[f"{name}_out"] for name in self.shapes if name not in self.ring}
        if self.ring:
            step = state[RING_STEP]
            for name in self.ring:
                ring = state[name]
                ring[:, step % ring.shape[1]] = out[f"{name}{PUSH_SUFFIX}"][:, 0]
                new[name] = ring
            new[RING_STEP] = step + 1
        return out["logits"], new

    def encode(self, ids: np.ndarray, start: int, control: np.ndarray | None) -> np.ndarray:
        """Input rows for positions start.. of each row of ids (batch, steps)
        → (batch, steps - start, input_size)."""
        return self.encode_from(ids, start, control)[0]

    def encode_from(self, ids: np.ndarray, start: int, control: np.ndarray | None,
                    memory=None):
        """`encode`, carrying the encoding's memory from call to call (see
        LookbackEncoding.inputs_from): → (rows, memory)."""
        rows, memory = self.encoding.inputs_from(ids, start, memory)
        if self.control_size:
            steps = np.arange(start, ids.shape[1]) + 1
            ahead = control[np.minimum(steps, len(control) - 1)]
            rows = np.concatenate([np.broadcast_to(ahead, rows.shape[:2] + ahead.shape[1:]),
                                   rows], axis=-1)
        return rows, memory


_LOADED: dict[tuple, EventRnn] = {}
SMALL_BATCH_ROWS = 8  # up to this many rows, one intra-op thread is faster


def load_event_rnn(ref, *, device: str | None = None, rows: int | None = None) -> EventRnn:
    """`EventRnn.from_ref`, once per model file, device and thread choice in
    a process (a batch over many inputs loads and checksums the model once).
    For `rows` ≤ SMALL_BATCH_ROWS the session gets one intra-op thread
    unless $MTOOLS_THREADS says otherwise: at batch 1 a step is too small to
    split, and a second thread only waits for a core another process holds
    (measured in benchmarks/results.md)."""
    import os

    from mtools.runtime import THREADS_ENV

    threads = None
    if rows is not None and rows <= SMALL_BATCH_ROWS and not os.environ.get(THREADS_ENV):
        threads = 1
    key = (str(ref.onnx_path), device, threads)
    if key not in _LOADED:
        _LOADED[key] = EventRnn.from_ref(ref, device=device, threads=threads)
    return _LOADED[key]


@dataclass(frozen=True)
class SearchOptions:
    """How to extend a primer. temperature: softmax temperature (1 = as
    trained). beam_size, branch_factor, steps_per_iteration: Magenta's beam
    search (each iteration every beam branches `branch_factor` times, each
    branch samples `steps_per_iteration` steps, the `beam_size` most likely
    survive); 1, 1, 1 is plain sampling."""

    temperature: float = 1.0
    beam_size: int = 1
    branch_factor: int = 1
    steps_per_iteration: int = 1


def generate(model: EventRnn, primer_ids: np.ndarray, num_steps: int, *, num_outputs: int,
             options: SearchOptions, rng: np.random.Generator,
             control: np.ndarray | None = None, progress=None) -> np.ndarray:
    """Extend `primer_ids` (steps ≥ 1,) by `num_steps` event ids, `num_outputs`
    times in one batch. Returns (num_outputs, primer + num_steps) int64, each
    row the most likely surviving beam of its output. `progress(done,
    num_steps)`, when given, hears of every iteration's steps."""
    beams = options.beam_size
    # Every row starts from the same primer: run it once, then copy its state.
    ids = np.asarray(primer_ids, dtype=np.int64)[None]
    inputs, memory = model.encode_from(ids, 0, control)
    logits, state = model.run(inputs, model.zero_state(1))
    every = np.zeros(num_outputs * beams, np.int64)
    ids, logits = ids[every], logits[every, -1]
    state, memory = model.take(state, every), _take(memory, every)
    scores = np.zeros(len(ids))
    last = last_pitches(ids)[:, -1]
    remaining = num_steps
    while remaining > 0:
        steps = min(options.steps_per_iteration, remaining)
        branch = options.branch_factor if beams > 1 or options.branch_factor > 1 else 1
        if branch > 1:
            ids, logits, scores, last = (np.repeat(a, branch, axis=0)
                                         for a in (ids, logits, scores, last))
            rows = np.repeat(np.arange(len(scores) // branch), branch)
            state, memory = model.take(state, rows), _take(memory, rows)
        for _ in range(steps):
            if model.repeat_bias:
                logits = logits + model.repeat_bias * repeat_mask(model.encoding, ids, last)
            classes, log_probs = sample_logits(logits, options.temperature, rng)
            scores += log_probs
            events = model.encoding.decode(classes, ids)
            last = np.where(events >= MELODY_SPECIAL_IDS, events, last)
            ids = np.concatenate([ids, events[:, None]], axis=1)
            inputs, memory = model.encode_from(ids, ids.shape[1] - 1, control, memory)
            logits, state = model.run(inputs, state)
            logits = logits[:, -1]
        if branch > 1:
            keep = best_rows(scores, num_outputs, beams)
            ids, logits, scores, last = ids[keep], logits[keep], scores[keep], last[keep]
            state, memory = model.take(state, keep), _take(memory, keep)
        remaining -= steps
        if progress is not None:
            progress(num_steps - remaining, num_steps)
    return ids[best_rows(scores, num_outputs, 1)]


def _take(memory, rows: np.ndarray):
    return None if memory is None else memory.take(rows)


def score_sequences(model: EventRnn, sequences: list[np.ndarray],
                    controls: list[np.ndarray] | None = None,
                    batch_size: int = 64) -> tuple[float, float, int]:
    """Teacher-forced scoring of whole id sequences: (total negative log-
    likelihood in nats of each next *event*, summing the probabilities of all
    classes that decode to it; count of correct argmax events; number of
    predicted events). Sequences are scored in length-sorted batches."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    nll, correct, count = 0.0, 0, 0
    for first in range(0, len(order), batch_size):
        chunk = [i for i in order[first:first + batch_size] if len(sequences[i]) > 1]
        if not chunk:
            continue
        batch_nll, batch_correct, batch_count = _score_batch(
            model, [sequences[i] for i in chunk],
            [controls[i] for i in chunk] if controls is not None else None)
        nll, correct, count = nll + batch_nll, correct + batch_correct, count + batch_count
    return nll, correct, count


def _score_batch(model: EventRnn, sequences: list[np.ndarray],
                 controls: list[np.ndarray] | None) -> tuple[float, int, int]:
    """Score equal-or-shorter sequences padded to the longest one."""
    nll, correct, count = 0.0, 0, 0
    for terms in scoring_terms(model, sequences, controls):
        log_probs = terms.log_probs(model.repeat_bias)
        nll -= float(np.logaddexp.reduce(np.where(terms.hit, log_probs, -np.inf), axis=1).sum())
        predicted = terms.hit[np.arange(len(log_probs)), log_probs.argmax(axis=1)]
        correct += int(predicted.sum())
        count += len(log_probs)
    return nll, correct, count


@dataclass(frozen=True)
class ScoringTerms:
    """One sequence's teacher-forced terms, (steps - 1, classes) each: the
    network's logits (no repeat bias), which classes decode to the real next
    event, and which would repeat the last pitch played."""

    logits: np.ndarray
    hit: np.ndarray
    repeats: np.ndarray

    def log_probs(self, repeat_bias: float) -> np.ndarray:
        """Log-probabilities of the classes with the repeat bias added."""
        return log_softmax(self.logits + repeat_bias * self.repeats)


def scoring_terms(model: EventRnn, sequences: list[np.ndarray],
                  controls: list[np.ndarray] | None = None):
    """ScoringTerms of each sequence, the network run once over all of them
    (padded to the longest)."""
    longest = max(len(s) for s in sequences)
    inputs = np.zeros((len(sequences), longest - 1, model.encoding.input_size + model.control_size),
                      np.float32)
    for row, ids in enumerate(sequences):
        control = controls[row] if controls is not None else None
        inputs[row, :len(ids) - 1] = model.encode(ids[None, :-1], 0, control)[0]
    logits, _ = model.run(inputs, model.zero_state(len(sequences)))
    for row, ids in enumerate(sequences):
        event_of_class = _class_events(model.encoding, ids)  # (steps - 1, classes)
        last = last_pitches(ids[None, :-1])[0]
        yield ScoringTerms(logits[row, :len(ids) - 1], event_of_class == ids[1:, None],
                           (event_of_class == last[:, None]) & (last[:, None] >= 0))


def last_pitches(ids: np.ndarray) -> np.ndarray:
    """For each position of ids (rows, steps), the id of the last pitch at
    or before it (melody ids ≥ MELODY_SPECIAL_IDS), -1 where none: (rows, steps)."""
    steps = np.arange(ids.shape[1])
    where = np.maximum.accumulate(np.where(ids >= MELODY_SPECIAL_IDS, steps, -1), axis=1)
    return np.where(where >= 0, np.take_along_axis(ids, np.maximum(where, 0), axis=1), -1)


def repeat_mask(encoding: LookbackEncoding, ids: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Which classes decode to each row's `last` pitch id ((rows,); -1: none)
    at the position after ids (rows, steps): (rows, classes) bool."""
    events = np.tile(np.arange(encoding.num_classes), (len(ids), 1))
    for index, distance in enumerate(encoding.lookbacks):
        back = ids.shape[1] - distance
        events[:, encoding.num_events + index] = ids[:, back] if back >= 0 else encoding.default_id
    return (events == last[:, None]) & (last[:, None] >= 0)


def _class_events(encoding: LookbackEncoding, ids: np.ndarray) -> np.ndarray:
    """For each position t of ids (predicting t + 1), the event id each class
    decodes to: (steps - 1, num_classes)."""
    steps = len(ids) - 1
    table = np.tile(np.arange(encoding.num_classes), (steps, 1))
    for index, distance in enumerate(encoding.lookbacks):
        back = np.arange(1, steps + 1) - distance  # position t + 1 looks back
        table[:, encoding.num_events + index] = np.where(
            back >= 0, ids[np.maximum(back, 0)], encoding.default_id)
    return table
