"""Event sequences ⇄ network inputs and class labels, as Magenta's
encoder-decoders define them, vectorised over whole sequences.

One class covers Magenta's one-hot and lookback encoder-decoders (a
one-hot encoder-decoder is a lookback one with no lookbacks and no counter):

- `basic_rnn`:    events one-hot (38 melody classes) → 38 inputs, 38 classes;
- `lookback_rnn`: one-hot of the current event, of the event that follows
  each lookback (1 and 2 bars = 16 and 32 steps back), a binary counter of
  the next step's metric position (5 bits), and "the current event repeats
  the one N steps back" flags → 121 inputs; classes are the 38 events plus
  "repeat the event 16 / 32 steps back" → 40;
- `drum_kit`:     512 drum-set classes, no lookbacks, 6 counter bits → 518
  inputs, 512 classes.

Events are turned into *event ids* (0..num_events-1) first by the model's own
mapping (`melody_event_ids`, drum bitmasks are their own ids); everything
here works on ids. `inputs[t]` encodes ids[0..t] and predicts `labels[t]`,
the class of ids[t + 1] — Magenta's `encode` layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtools.models.events import NO_EVENT

MELODY_SPECIAL_IDS = 2  # ids 0 and 1 are NO_EVENT and NOTE_OFF; pitches follow


def melody_event_ids(events: np.ndarray, min_note: int, max_note: int) -> np.ndarray:
    """Melody events (NO_EVENT, NOTE_OFF or MIDI pitch) → ids (Magenta's
    MelodyOneHotEncoding): 0 no event, 1 note off, 2 + pitch - min_note.
    Pitches must lie in [min_note, max_note); (steps,) int → (steps,) int64."""
    events = np.asarray(events, dtype=np.int64)
    pitched = events >= 0
    if np.any(pitched & ((events < min_note) | (events >= max_note))):
        raise ValueError(f"melody pitches must lie in [{min_note}, {max_note})")
    return np.where(pitched, events - min_note + MELODY_SPECIAL_IDS, events - NO_EVENT)


def melody_ids_to_events(ids: np.ndarray, min_note: int) -> np.ndarray:
    """The inverse of `melody_event_ids`."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids >= MELODY_SPECIAL_IDS, ids - MELODY_SPECIAL_IDS + min_note, ids + NO_EVENT)


@dataclass(frozen=True)
class LookbackEncoding:
    """Inputs and labels over event ids.

    num_events: how many event ids there are (38 melody, 512 drum sets).
    lookbacks: lookback distances in steps (Magenta: one and two bars).
    counter_bits: bits of the binary counter of the next step's position.
    default_id: the id standing for "no event" (before the sequence starts).
    """

    num_events: int
    lookbacks: tuple[int, ...] = ()
    counter_bits: int = 0
    default_id: int = 0

    @classmethod
    def from_card(cls, encoding: dict) -> LookbackEncoding:
        """Build from a model card's `encoding` section."""
        return cls(int(encoding["num_events"]), tuple(encoding.get("lookbacks", ())),
                   int(encoding.get("counter_bits", 0)), int(encoding.get("default_id", 0)))

    def to_card(self) -> dict:
        return {"num_events": self.num_events, "lookbacks": list(self.lookbacks),
                "counter_bits": self.counter_bits, "default_id": self.default_id}

    # The inputs at a position depend only on the last max(lookbacks) steps
    # (a training crop needs no earlier context than that).
    needs_full_history = False

    @property
    def input_size(self) -> int:
        n, k = self.num_events, len(self.lookbacks)
        return n + k * n + self.counter_bits + k

    @property
    def num_classes(self) -> int:
        return self.num_events + len(self.lookbacks)

    def inputs(self, ids: np.ndarray, start: int = 0, offset: int = 0) -> np.ndarray:
        """Input rows for positions start..steps-1 of ids (steps,) or a batch
        (batch, steps): (..., steps - start, input_size) float32. `offset` is
        the absolute position of ids[..., 0] in its piece (the counter counts
        from the piece's start, so a crop must say where it starts)."""
        ids = np.asarray(ids, dtype=np.int64)
        batched = ids.ndim == 2
        ids = ids if batched else ids[None]
        positions = np.arange(start, ids.shape[1])
        out = np.zeros((len(ids), len(positions), self.input_size), dtype=np.float32)
        current = ids[:, positions]  # (batch, rows)
        _set_one_hot(out, 0, current)
        column = self.num_events
        for distance in self.lookbacks:  # the event that follows the one `distance` back
            back = positions - distance + 1
            following = np.where(back >= 0, ids[:, np.maximum(back, 0)], self.default_id)
            _set_one_hot(out, column, following)
            column += self.num_events
        step = positions + offset + 1  # metric position of the *next* step
        for bit in range(self.counter_bits):
            out[:, :, column] = np.where((step >> bit) & 1, 1.0, -1.0)
            column += 1
        for distance in self.lookbacks:  # the current event repeats the one `distance` back
            back = positions - distance
            out[:, :, column] = (back >= 0) & (ids[:, np.maximum(back, 0)] == current)
            column += 1
        return out if batched else out[0]

    def inputs_from(self, ids: np.ndarray, start: int, memory=None,
                    offset: int = 0) -> tuple[np.ndarray, None]:
        """`inputs(ids, start, offset)` for a batch, and what the encoding
        carries from one call to the next when a sampling loop appends a
        step at a time: the memory of ids[:, :start] goes in (None: read it
        from ids) and that of all ids comes out, with a `take(rows)` for
        beams. Lookback inputs read only the last bars, so they carry None;
        key inputs (KeyMelodyEncoding) carry their key estimate."""
        return self.inputs(ids, start, offset), None

    def labels(self, ids: np.ndarray) -> np.ndarray:
        """Class of each id from position 1 on: (steps - 1,) int64. A repeat
        of the farthest matching lookback wins over the plain event; before
        the farthest lookback exists, a default event is "repeat farthest"
        (Magenta's rule)."""
        ids = np.asarray(ids, dtype=np.int64)
        positions = np.arange(1, len(ids))
        labels = ids[positions].copy()
        if not self.lookbacks:
            return labels
        decided = np.zeros(len(positions), dtype=bool)
        farthest = len(self.lookbacks) - 1
        early_default = (positions < self.lookbacks[-1]) & (ids[positions] == self.default_id)
        labels[early_default] = self.num_events + farthest
        decided |= early_default
        for index in range(farthest, -1, -1):
            back = positions - self.lookbacks[index]
            repeat = ~decided & (back >= 0) & (ids[np.maximum(back, 0)] == ids[positions])
            labels[repeat] = self.num_events + index
            decided |= repeat
        return labels

    def decode(self, classes: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Event ids for sampled classes, given each sequence's ids so far:
        classes (batch,), history (batch, steps) → (batch,) int64."""
        classes = np.asarray(classes, dtype=np.int64)
        ids = classes.copy()
        steps = history.shape[1]
        for index, distance in enumerate(self.lookbacks):
            chosen = classes == self.num_events + index
            if np.any(chosen):
                ids[chosen] = history[chosen, steps - distance] if steps >= distance \
                    else self.default_id
        return ids


def _set_one_hot(out: np.ndarray, column: int, values: np.ndarray) -> None:
    """out[b, r, column + values[b, r]] = 1 for every batch row b and row r."""
    batch, rows = np.indices(values.shape)
    out[batch, rows, column + values] = 1.0
