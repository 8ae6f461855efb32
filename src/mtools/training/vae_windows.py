"""What MusicVAE trains and is measured on, without torch (`mtools eval`
uses it too): the trainable configs, and the windows of a corpus."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from mtools.errors import UsageError
from mtools.models.encoding import MELODY_SPECIAL_IDS
from mtools.models.music_vae import BAR_STEPS, TRIO_PARTS, VaeSpace, groove_frames, windows_of
from mtools.training import corpora

TRANSPOSE = 5  # melodies: a random shift of up to this many semitones either way


@dataclass(frozen=True)
class VaeConfig:
    """A trainable MusicVAE config: its space, default data, and the
    loss's KL weight and free bits (in nats here; Magenta's `free_bits` is
    in bits)."""

    name: str
    space: VaeSpace
    default_sources: tuple[str, ...]
    description: str
    beta: float = 0.05  # Magenta anneals toward 0.2 at rate 0.99999: under 0.1 for 70k steps
    free_bits: float = 48.0
    task: str = "interpolate"  # the command that plays it
    network: tuple = ()  # (name, value) pairs over the default network (nets.MusicVAENet)
    train_hop: int = 16  # training windows start every this many steps (valid: every bar)
    sampling_rate: float = 0.0  # scheduled sampling (see music_vae.VaeLoss); 0 = always teacher-forced
    trio_part: str = ""  # train on this part of the sources' trios ("bass", "drums")

    @property
    def spec(self) -> str:
        return f"music_vae:{self.name}"


CONFIGS = {
    "mel_2bar": VaeConfig("mel_2bar", VaeSpace("melody", 32), ("music21:folk", "nottingham"),
                          "2-bar melodies ↔ z (Magenta cat-mel_2bar_small layout)"),
    "drums_2bar": VaeConfig("drums_2bar", VaeSpace("drums", 32), ("groove",),
                            "2-bar drum patterns, 9 classes as 512 sets ↔ z "
                            "(Magenta cat-drums_2bar_small layout)",
                            train_hop=4, sampling_rate=1000.0, network=(("dropout", 0.2),)),
    "mel_16bar": VaeConfig("mel_16bar", VaeSpace("melody", 256), ("music21:folk", "nottingham"),
                           "16-bar melodies ↔ z (the task of Magenta's hierdec-mel_16bar), "
                           "stacked on mel_2bar: its encoder "
                           "reads each bar's 2-bar window, a linear summary of the 16 bar codes "
                           "gives z, and a linear conductor gives each bar a mel_2bar code that "
                           "mel_2bar's decoder plays",
                           free_bits=177.0,  # Magenta's hierdec-mel_16bar: 256 bits
                           network=(("bars", 16), ("conductor_hidden", 256), ("stacked", True),
                                    ("z_size", 512))),  # Magenta's; 256 played 0.970, 512 0.986
    "trio_16bar": VaeConfig("trio_16bar", VaeSpace("trio", 256), ("nottingham",),
                            "16-bar trios (melody, bass, drums) ↔ z (the task of Magenta's "
                            "hierdec-trio_16bar), stacked on a 2-bar model per part (mel_2bar, "
                            "bass_2bar, trio_drums_2bar): each part's encoder reads each bar's "
                            "2-bar window, a linear summary of all bars' codes gives z, and a "
                            "linear conductor gives each bar of each part a code that the "
                            "part's 2-bar decoder plays; Nottingham tunes with MMA-made bass "
                            "and drums",
                            free_bits=177.0,  # as mel_16bar: Magenta's 256 bits
                            network=(("bars", 16), ("stacked", True), ("z_size", 768),
                                     ("squeeze", 32), ("part_z_size", 256))),
                            # squeeze 32, z 768 played bars back 0.995 / 0.994 / 0.983
                            # (melody / bass / drums), squeeze 48, z 512: 0.989 / 0.988 / 0.959
    "bass_2bar": VaeConfig("bass_2bar", VaeSpace("melody", 32, line="bass"), ("nottingham",),
                           "2-bar bass lines ↔ z (mel_2bar's layout), trained on the MMA-made "
                           "bass lines of Nottingham tunes: trio_16bar's bass part",
                           trio_part="bass"),
    "trio_drums_2bar": VaeConfig("trio_drums_2bar", VaeSpace("drums", 32), ("nottingham",),
                                 "2-bar drum patterns ↔ z (drums_2bar's layout), trained on the "
                                 "MMA-made drum parts of Nottingham tunes: trio_16bar's drums part",
                                 trio_part="drums", network=(("dropout", 0.2),)),
    "groovae": VaeConfig("groovae", VaeSpace("groove", 32, encoder="quantized"), ("groove",),
                         "GrooVAE humanize: 2 bars of quantized drum hits → velocities and "
                         "microtiming (Magenta groovae_2bar_humanize layout)", task="humanize"),
    "groovae_tap": VaeConfig("groovae_tap", VaeSpace("groove", 32, encoder="tap"), ("groove",),
                             "GrooVAE drumify: 2 bars of taps (one rhythm, no velocity) → a "
                             "drum groove (Magenta groovae_2bar_tap_fixed_velocity layout)",
                             task="drumify"),
}
DEFAULT_CONFIG = "mel_2bar"


def find_config(name: str | None) -> VaeConfig:
    config = CONFIGS.get(name or DEFAULT_CONFIG)
    if config is None:
        raise UsageError(f"no trainable model music_vae:{name}",
                         hint=f"choose from {', '.join(f'music_vae:{c}' for c in CONFIGS)}")
    return config


def load_windows(config: VaeConfig, sources, part: str, progress=None) -> np.ndarray:
    """All windows of one split part of the sources: of melodies (or drum
    tracks, grooves, trios) whose bar divides the window, starting on
    every bar line of 16 steps (training windows: every `config.train_hop`
    steps), empty windows left out. Ids (n, steps), or groove frames (n,
    steps, 27)."""
    from mtools.training.trios import load_trios

    space = config.space
    load = {"drums": corpora.load_drum_tracks, "groove": corpora.load_grooves,
            "trio": load_trios}.get(space.kind, corpora.load_melodies)
    if config.trio_part:
        load = partial(_trio_part, config.trio_part)
    rows = []
    for source in sources:
        lines = load(source, progress=progress)
        if part != "all":
            lines = corpora.split(lines, part)
        for line in lines:
            if space.steps % line.steps_per_bar == 0 and 16 % line.steps_per_bar == 0:
                rows.append(_line_windows(line, space, config.train_hop if part == "train"
                                          else 16))
    rows = [r for r in rows if len(r)]
    if rows:
        return np.concatenate(rows)
    if space.kind == "groove":
        return np.zeros((0, space.steps, space.input_size), np.float32)
    return np.zeros((0, space.steps), np.int32 if space.kind == "trio" else np.int16)


def _trio_part(part: str, source: str, progress=None) -> list:
    """The trios of `source` with one part's events as their events."""
    from mtools.training.trios import load_trios

    column = TRIO_PARTS.index(part)
    return [replace(line, events=np.asarray(line.events)[:, column])
            for line in load_trios(source, progress=progress)]


def _line_windows(line, space: VaeSpace, hop: int = 16) -> np.ndarray:
    if space.kind != "groove":
        return windows_of(np.asarray(line.events), space, hop)
    unit = math.lcm(hop, BAR_STEPS)
    padded = len(line.events) + -len(line.events) % unit  # the last bars count (frames pad)
    frames = [groove_frames(line, start, space.steps)
              for start in range(0, padded - space.steps + 1, hop)]
    frames = [f for f in frames if space.has_notes(f)]
    return np.stack(frames) if frames else np.zeros((0, space.steps, space.input_size), np.float32)


def transpose_ids(ids: np.ndarray, shifts: np.ndarray, space: VaeSpace) -> np.ndarray:
    """Melody ids (batch, steps) moved by shifts (batch,) semitones (a
    trio's melody and bass, its drums as they are); a row whose shift would
    leave the range stays where it is."""
    parts = space.parts(ids)
    melodic = parts[..., :2] if space.kind == "trio" else parts
    pitched = melodic >= MELODY_SPECIAL_IDS
    moved = np.where(pitched, melodic + shifts[:, None, None], melodic)
    bad = (pitched & ((moved < MELODY_SPECIAL_IDS) | (moved >= space.pitch_classes))).any(
        axis=(1, 2))
    moved = np.concatenate([moved, parts[..., 2:]], axis=-1) if space.kind == "trio" else moved
    return np.where(bad[:, None], ids, space.pack(moved))
