"""Magenta's attention_rnn inputs (KeyMelodyEncoderDecoder), 74 per step
for the 36-note range: the sounding pitch (36) and note/silence flags (2),
attack, melody direction, "repeats 1 / 2 bars back" flags, a 7-bit counter
of the next step, a start-of-bar flag, and two key estimates (12 + 12:
every major key that holds the most notes of the whole melody so far, and
of its last three distinct pitches).

Classes are those of `LookbackEncoding` (38 events and two repeats), so
labels, decoding and scoring are shared; only the inputs differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mtools.models.encoding import MELODY_SPECIAL_IDS, LookbackEncoding

KEY_MELODY = "key_melody"
NO_EVENT_ID, NOTE_OFF_ID = 0, 1
STEPS_PER_BAR = 16
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
# _KEY_OF[k, pc] = 1 when pitch class pc is in the major scale of key k
_KEY_OF = np.zeros((12, 12), np.int64)
for _key in range(12):
    _KEY_OF[_key, (MAJOR_SCALE + _key) % 12] = 1


@dataclass(frozen=True)
class KeyMelodyEncoding(LookbackEncoding):
    """num_events = note range + 2; lookbacks (16, 32); 7 counter bits."""

    needs_full_history = True  # the key estimate reads the whole melody so far

    @property
    def note_range(self) -> int:
        return self.num_events - MELODY_SPECIAL_IDS

    @property
    def input_size(self) -> int:
        return self.note_range + 2 + 1 + 1 + len(self.lookbacks) + self.counter_bits + 1 + 24

    def to_card(self) -> dict:
        return {**super().to_card(), "input_features": KEY_MELODY}

    def inputs(self, ids: np.ndarray, start: int = 0, offset: int = 0) -> np.ndarray:
        """As LookbackEncoding.inputs: (..., steps - start, input_size)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows, _ = self.inputs_from(ids if ids.ndim == 2 else ids[None], start, offset=offset)
        return rows if ids.ndim == 2 else rows[0]

    def inputs_from(self, ids: np.ndarray, start: int, memory: _KeyState | None = None,
                    offset: int = 0) -> tuple[np.ndarray, _KeyState]:
        """As LookbackEncoding.inputs_from: `memory` is the key state after
        ids[:, :start] (None: read it from ids), and the state after all of
        ids comes back, so a sampling loop reads each new step once."""
        ids = np.asarray(ids, dtype=np.int64)
        state = memory
        if state is None:
            state = _KeyState.empty(len(ids))
            for position in range(start):
                state = state.add(ids[:, position])
        out = np.zeros((len(ids), ids.shape[1] - start, self.input_size), np.float32)
        for position in range(start, ids.shape[1]):
            state = state.add(ids[:, position])
            out[:, position - start] = self._rows(ids, position, offset, state)
        return out, state

    def memories_at(self, ids: np.ndarray, every: int) -> _KeyState:
        """The key state after ids[:k * every] for k = 0, 1, ... while
        k * every < len(ids), one row each: one pass over a melody, so that
        crops of it can start from their state (`_KeyState.concat`)."""
        ids = np.asarray(ids, dtype=np.int64)
        state, states = _KeyState.empty(1), []
        for position in range(len(ids)):
            if position % every == 0:
                states.append(state)
            state = state.add(ids[position:position + 1])
        return _KeyState.concat(states)

    def _rows(self, ids: np.ndarray, position: int, offset, state: _KeyState) -> np.ndarray:
        """The input rows of one position for every sequence: (batch, input_size).
        offset: the steps before ids' first column, one for all rows or an
        array of one per row. (Written for few numpy calls: a sampling loop
        makes one per step.)"""
        batch, notes = len(ids), self.note_range
        rows = np.zeros((batch, self.input_size), np.float32)
        sounding = state.current >= 0
        rows[sounding, state.current[sounding]] = 1.0
        rows[:, notes] = sounding
        rows[:, notes + 1] = ~sounding
        column = notes + 2
        rows[:, column] = state.attack
        rows[:, column + 1] = state.ascending
        column += 2
        for distance in self.lookbacks:
            back = position - distance
            if back >= 0:
                rows[:, column] = ids[:, back] == ids[:, position]
            column += 1
        count = position + offset + 1  # steps so far, the next step's position
        rows[:, column:column + self.counter_bits + 1] = (
            _clock_row(count, self.counter_bits) if np.ndim(count) == 0
            else _clock_rows(count, self.counter_bits))
        column += self.counter_bits + 1
        recent = np.zeros((batch, 13), np.int64)  # column 12 counts the empty slots
        np.add.at(recent, (np.arange(batch)[:, None], np.where(
            state.last_three >= 0, state.last_three % 12, 12)), 1)
        rows[:, column:column + 24] = _best_keys(np.stack(
            [state.pitch_classes, recent[:, :12]], axis=1)).reshape(batch, 24)
        return rows


@lru_cache(maxsize=None)
def _clock_row(count: int, bits: int) -> np.ndarray:
    """The binary counter of step `count` (±1 per bit, least first) and its
    start-of-bar flag: (bits + 1,) float32 (cached: a sampling loop asks
    for one per step)."""
    return _clock_rows(np.array([count]), bits)[0]


def _clock_rows(counts: np.ndarray, bits: int) -> np.ndarray:
    """_clock_row of each of counts: (len(counts), bits + 1) float32."""
    counts = np.asarray(counts, dtype=np.int64)[:, None]
    row = np.where((counts >> np.arange(bits)) & 1, 1.0, -1.0)
    return np.concatenate([row, counts % STEPS_PER_BAR == 0], axis=1).astype(np.float32)


def _best_keys(pitch_class_counts: np.ndarray) -> np.ndarray:
    """1 for every major key holding the most of these notes, else 0:
    counts (..., 12) → (..., 12)."""
    in_key = pitch_class_counts @ _KEY_OF.T
    return (in_key == in_key.max(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class _KeyState:
    """What the key inputs remember of a batch of melodies read event by
    event, one array row per melody. Notes are indices 0..note_range-1
    (pitch - min_note; min_note 48 is a C, so note % 12 is the pitch
    class). current: the sounding note or -1; attack: a note began at the
    last step; ascending: 1 / -1 for the direction of the last change of
    note, 0 before one; last_three: the last three distinct notes, newest
    last, -1 where there are fewer; pitch_classes: notes begun per class."""

    current: np.ndarray  # (batch,) int64
    attack: np.ndarray  # (batch,) bool
    ascending: np.ndarray  # (batch,) int64
    last_three: np.ndarray  # (batch, 3) int64
    pitch_classes: np.ndarray  # (batch, 12) int64

    @classmethod
    def empty(cls, batch: int) -> _KeyState:
        return cls(np.full(batch, -1), np.zeros(batch, bool), np.zeros(batch, np.int64),
                   np.full((batch, 3), -1), np.zeros((batch, 12), np.int64))

    @classmethod
    def concat(cls, states: list[_KeyState]) -> _KeyState:
        """The rows of several states, in order, as one batch."""
        return cls(*(np.concatenate(parts) for parts in zip(
            *((st.current, st.attack, st.ascending, st.last_three, st.pitch_classes)
              for st in states))))

    def take(self, rows: np.ndarray) -> _KeyState:
        """The state of batch rows `rows` (beams that survive a search)."""
        return _KeyState(*(np.take(value, rows, axis=0) for value in
                           (self.current, self.attack, self.ascending, self.last_three,
                            self.pitch_classes)))

    def add(self, event_ids: np.ndarray) -> _KeyState:
        """The state after one more event per melody: (batch,) event ids."""
        begun = event_ids >= MELODY_SPECIAL_IDS
        if not begun.any():  # holds and note-offs (most steps): no note, no key change
            return _KeyState(np.where(event_ids == NOTE_OFF_ID, -1, self.current), begun,
                             self.ascending, self.last_three, self.pitch_classes)
        note = event_ids - MELODY_SPECIAL_IDS
        current = np.where(begun, note, np.where(event_ids == NOTE_OFF_ID, -1, self.current))
        newest = self.last_three[:, -1]
        changed = begun & (newest >= 0) & (note != newest)
        ascending = np.where(changed, np.where(note > newest, 1, -1), self.ascending)
        # the begun note leaves its place in last_three (else the oldest slot
        # goes) and joins at the newest end; -1 gaps stay in front
        present = self.last_three == note[:, None]
        drop = np.where(present.any(axis=1), present.argmax(axis=1), 0)
        moved = np.concatenate([np.take_along_axis(self.last_three, _KEPT[drop], axis=1),
                                note[:, None]], axis=1)
        last_three = np.where(begun[:, None], moved, self.last_three)
        pitch_classes = self.pitch_classes + (begun[:, None] & (_PITCH_CLASSES == note[:, None] % 12))
        return _KeyState(current, begun, ascending, last_three, pitch_classes)


_KEPT = np.array([[1, 2], [0, 2], [0, 1]])  # the slots of last_three kept when one is dropped
_PITCH_CLASSES = np.arange(12)


def encoding_from_card(encoding: dict) -> LookbackEncoding:
    """The encoding a card describes: key-melody inputs or lookback ones."""
    if encoding.get("input_features") == KEY_MELODY:
        return KeyMelodyEncoding(int(encoding["num_events"]), tuple(encoding["lookbacks"]),
                                 int(encoding["counter_bits"]), int(encoding.get("default_id", 0)))
    return LookbackEncoding.from_card(encoding)
