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
        if ids.ndim == 2:
            return np.stack([self._inputs_1d(row, start, offset) for row in ids])
        return self._inputs_1d(ids, start, offset)

    def _inputs_1d(self, ids: np.ndarray, start: int, offset: int) -> np.ndarray:
        state = _MelodyState(self.note_range)
        out = np.zeros((len(ids) - start, self.input_size), np.float32)
        for position, event in enumerate(ids):
            state.add(int(event))
            if position >= start:
                out[position - start] = self._row(ids, position, offset, state)
        return out

    def _row(self, ids: np.ndarray, position: int, offset: int, state) -> np.ndarray:
        row = np.zeros(self.input_size, np.float32)
        notes = self.note_range
        if state.current is not None:
            row[state.current], row[notes] = 1.0, 1.0
        else:
            row[notes + 1] = 1.0
        column = notes + 2
        row[column] = float(state.attack)
        row[column + 1] = 0.0 if state.ascending is None else (1.0 if state.ascending else -1.0)
        column += 2
        for distance in self.lookbacks:
            back = position - distance
            row[column] = float(back >= 0 and ids[back] == ids[position])
            column += 1
        count = position + offset + 1  # steps so far, the next step's position
        for bit in range(self.counter_bits):
            row[column] = 1.0 if (count >> bit) & 1 else -1.0
            column += 1
        row[column] = float(count % STEPS_PER_BAR == 0)
        column += 1
        row[column:column + 12] = _best_keys(state.pitch_classes)
        row[column + 12:column + 24] = _best_keys(np.bincount(
            np.array(state.last_three, np.int64) % 12, minlength=12))
        return row


def _best_keys(pitch_class_counts: np.ndarray) -> np.ndarray:
    """1 for every major key holding the most of these notes, else 0."""
    in_key = _KEY_OF @ pitch_class_counts
    return (in_key == in_key.max()).astype(np.float32)


class _MelodyState:
    """What the key inputs remember of a melody read event by event; notes
    are indices 0..note_range-1 (pitch - min_note), which keeps pitch
    classes relative to min_note (48 = C, so they are true pitch classes)."""

    def __init__(self, note_range: int):
        self.note_range = note_range
        self.current: int | None = None
        self.attack = False
        self.ascending: bool | None = None
        self.last_three: list[int] = []
        self.pitch_classes = np.zeros(12, np.int64)

    def add(self, event_id: int) -> None:
        if event_id == NO_EVENT_ID:
            self.attack = False
        elif event_id == NOTE_OFF_ID:
            self.current, self.attack = None, False
        else:
            note = event_id - MELODY_SPECIAL_IDS
            self.attack, self.current = True, note
            if self.last_three:
                if note != self.last_three[-1]:
                    self.ascending = note > self.last_three[-1]
            if note in self.last_three:
                self.last_three.remove(note)
            self.last_three = (self.last_three + [note])[-3:]
            self.pitch_classes[note % 12] += 1


def encoding_from_card(encoding: dict) -> LookbackEncoding:
    """The encoding a card describes: key-melody inputs or lookback ones."""
    if encoding.get("input_features") == KEY_MELODY:
        return KeyMelodyEncoding(int(encoding["num_events"]), tuple(encoding["lookbacks"]),
                                 int(encoding["counter_bits"]), int(encoding.get("default_id", 0)))
    return LookbackEncoding.from_card(encoding)
