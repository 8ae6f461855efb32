"""What each trainable event model needs from its data: the examples of
each split as model ids (and control rows), the encoding, and the card's
encoding section. Shared by `mtools train` (with torch) and `mtools eval`
(numpy only: this module imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mtools.errors import UsageError
from mtools.models.encoding import LookbackEncoding
from mtools.training import corpora

MELODY_RANGE = (48, 84)  # Magenta's melody models: C3..B5
STEPS_PER_QUARTER = 4


@dataclass(frozen=True)
class Example:
    """One piece for training or scoring: event ids (steps,) and optional
    control rows (steps, control_size), control[t] describing step t."""

    ids: np.ndarray
    control: np.ndarray | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A trainable config: its encoding, network size, default data, and how
    to turn a source into examples."""

    family: str
    config: str
    encoding: LookbackEncoding
    card_encoding: dict
    default_sources: tuple[str, ...]
    load: Callable[[str], list]  # source → corpus items (MelodyLine, ...)
    to_example: Callable[[object], Example]
    network: dict = field(default_factory=lambda: {"hidden": 128, "layers": 2, "dropout": 0.5})
    description: str = ""
    augment: Callable | None = None
    card_data: Callable | None = None  # sources → extra card encoding measured on train data
    module: str = "event_lstm"  # the network (mtools.training.nets.MODULES)

    @property
    def spec(self) -> str:
        return f"{self.family}:{self.config}"


def _melody_spec(config: str, lookbacks: tuple[int, ...], counter_bits: int,
                 description: str, attention: bool = False) -> ModelSpec:
    from mtools.models.key_encoding import KeyMelodyEncoding
    from mtools.models.melody_rnn import MelodySpace, training_ids

    low, high = MELODY_RANGE
    kind = KeyMelodyEncoding if attention else LookbackEncoding
    encoding = kind(high - low + 2, lookbacks, counter_bits, 0)
    space = MelodySpace(low, high, STEPS_PER_QUARTER, 0)
    card = {**encoding.to_card(), "min_note": low, "max_note": high,
            "steps_per_quarter": STEPS_PER_QUARTER, "transpose_to_key": 0,
            "event_ids": "0 no event, 1 note off, 2 + pitch - min_note"}
    return ModelSpec("melody_rnn", config, encoding, card, ("music21:folk", "nottingham"),
                     corpora.load_melodies, lambda line: Example(training_ids(line, space)),
                     network=_event_network(attention, hidden=128), description=description,
                     module=_event_module(attention))


def _drums_spec(config: str = "drum_kit", attention: bool = False) -> ModelSpec:
    from mtools.models.drums_rnn import DRUM_PITCHES_KEY, velocity_spread, velocity_table
    from mtools.models.events import DRUM_CLASS_NAMES, DRUM_TYPE_PITCHES, NUM_DRUM_SETS

    encoding = LookbackEncoding(NUM_DRUM_SETS, (), 6, 0)
    card = {**encoding.to_card(), "steps_per_quarter": STEPS_PER_QUARTER,
            "drum_classes": list(DRUM_CLASS_NAMES),
            DRUM_PITCHES_KEY: [list(p) for p in DRUM_TYPE_PITCHES],
            "event_ids": "bitmask of the drum classes struck at the step"}

    def card_data(sources) -> dict:
        tracks = [t for source in sources for t in corpora.load_drum_tracks(source)]
        train = corpora.split(tracks, "train")
        return {"velocity_table": velocity_table(train).tolist(),
                "velocity_spread": velocity_spread(train)}

    description = ("drum continuation with attention over 40 steps (drum_kit inputs, "
                   "attention_rnn network; not a Magenta config)" if attention else
                   "drum continuation, 9 drum classes as 512 sets (Magenta drum_kit)")
    return ModelSpec("drums_rnn", config, encoding, card, ("groove",),
                     corpora.load_drum_tracks, lambda track: Example(np.asarray(track.events, np.int64)),
                     network=_event_network(attention, hidden=256), description=description,
                     card_data=card_data, module=_event_module(attention))


def _improv_spec(config: str = "chord_pitches_improv", attention: bool = False) -> ModelSpec:
    """Magenta's chord_pitches_improv; with attention, also lookback inputs
    and repeat classes (lookback_rnn's kind) at 16, 32, 48 and 64 steps and
    a 6-bit step counter: one bar of 4/4, and four bars of 2/4 (32), of 3/4
    or 6/8 (48) and of 4/4 (64). Nottingham's validation tunes repeat a
    2-bar window in 87 of 677 windows, 79 of them exactly four bars back (a
    phrase played again). Magenta's 1- and 2-bar lookbacks (16, 32) and 40
    steps of attention reach that far only in 2/4; the network without
    lookbacks never repeated a window."""
    from mtools.models.improv_rnn import CONTROL_SIZE, TRANSPOSITIONS, chord_controls, \
        transpose_example
    from mtools.models.events import squash_melody
    from mtools.models.encoding import melody_event_ids

    low, high = MELODY_RANGE
    encoding = (LookbackEncoding(high - low + 2, (16, 32, 48, 64), 6, 0) if attention
                else LookbackEncoding(high - low + 2, (), 0, 0))
    card = {**encoding.to_card(), "min_note": low, "max_note": high,
            "steps_per_quarter": STEPS_PER_QUARTER, "control_size": CONTROL_SIZE,
            "control": "chord of the next step: no-chord flag, root one-hot (12), pitch "
                       "classes (12), bass one-hot (12)",
            "event_ids": "0 no event, 1 note off, 2 + pitch - min_note"}

    def to_example(sheet) -> Example:
        events, _ = squash_melody(np.asarray(sheet.melody.events), low, high, None)
        return Example(melody_event_ids(events, low, high), chord_controls(sheet.chords))

    def augment(rng: np.random.Generator, example: Example) -> Example:
        semitones = int(rng.choice(TRANSPOSITIONS))
        return Example(*transpose_example(example.ids, example.control, semitones, low, high))

    description = ("melody over chords with lookbacks at 16, 32, 48 and 64 steps (up to 4 "
                   "bars) and attention over 40 steps (chord_pitches_improv chords, "
                   "lookback_rnn-style melody inputs, attention_rnn network; not a Magenta "
                   "config)" if attention else
                   "melody over chords (Magenta chord_pitches_improv)")
    return ModelSpec("improv_rnn", config, encoding, card, ("nottingham",),
                     corpora.load_lead_sheets, to_example,
                     network=_event_network(attention, hidden=256), description=description,
                     augment=augment, module=_event_module(attention))


def _event_network(attention: bool, hidden: int) -> dict:
    """An event RNN's network: Magenta's attention_rnn size with attention,
    else 2 LSTM layers of `hidden`."""
    if attention:
        return {"hidden": 128, "layers": 2, "dropout": 0.5, "attn_length": 40}
    return {"hidden": hidden, "layers": 2, "dropout": 0.5}


def _event_module(attention: bool) -> str:
    return "attention_lstm" if attention else "event_lstm"


def model_specs() -> dict[str, ModelSpec]:
    """Every trainable config by "family:config"."""
    specs = [
        _drums_spec(),
        _drums_spec("attention_kit", attention=True),
        _improv_spec(),
        _improv_spec("attention_improv", attention=True),
        _melody_spec("basic_rnn", (), 0, "melody continuation, one-hot events (Magenta basic_rnn)"),
        _melody_spec("lookback_rnn", (16, 32), 5,
                     "melody continuation with 1- and 2-bar lookback (Magenta lookback_rnn)"),
        _melody_spec("attention_rnn", (16, 32), 7,
                     "melody continuation with key inputs and attention over 40 steps "
                     "(Magenta attention_rnn)", attention=True),
    ]
    return {spec.spec: spec for spec in specs}


DEFAULT_CONFIGS = {"melody_rnn": "attention_rnn", "drums_rnn": "drum_kit",
                   "improv_rnn": "attention_improv"}


def find_spec(family: str, config: str | None) -> ModelSpec:
    """The spec of `family` (and `config`, else its default); UsageError
    listing what exists otherwise."""
    specs = model_specs()
    name = f"{family}:{config or DEFAULT_CONFIGS.get(family, '')}"
    if name not in specs:
        raise UsageError(f"no trainable model {name}",
                         hint=f"choose from {', '.join(sorted(specs))}")
    return specs[name]


def load_examples(spec: ModelSpec, sources, part: str, progress=None) -> list[Example]:
    """Examples of one split part ("train", "valid", or "all") from sources."""
    items = []
    for source in sources:
        items.extend(spec.load(source, progress=progress))
    if part != "all":
        items = corpora.split(items, part)
    return [spec.to_example(item) for item in items]
