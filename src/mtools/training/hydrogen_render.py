"""Rendering drum training audio from Hydrogen drum kits (Debian's
`hydrogen-drumkits`): recorded acoustic kits, WAV/FLAC/AIFF samples with
velocity layers, a timbre variety the General MIDI soundfonts lack.

A kit is its folder's drumkit.xml: instruments by name, each with a volume
and layers (sample file, velocity range in 0..1, gain, pitch in
semitones). Hydrogen kits carry no General MIDI map that all of them
share, so KIT_KEYS names, per kit, the instrument each GM drum key plays;
a key a kit does not name plays its class's first key (DRUM_CLASSES).

A note plays the layer whose velocity range holds velocity/127 (one drawn
at random where ranges overlap, the nearest where none holds it), scaled
by velocity/127, the layer's gain and the instrument's volume, as Hydrogen
does. A ringing open hi-hat stops at the next hi-hat hit (a 10 ms fade),
as the pedal closes it. The audio starts at the score's time 0 and lasts
until the last note ends plus render.RELEASE_TAIL_S or the last sample
stops, whichever is later; samples are mixed to mono (both channels of the
returned array are the same)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mtools.errors import InputMissingError, MtoolsError
from mtools.io import render
from mtools.score import Score

KITS_DIR = Path("/usr/share/hydrogen/data/drumkits")
PACKAGE = "hydrogen-drumkits"
PREFIX = "hydrogen:"  # a Take's soundfont "hydrogen:<kit folder>" plays that kit
HI_HAT_KEYS = frozenset({42, 44, 46, 22, 26})
OPEN_HI_HAT_KEYS = frozenset({46, 26})
CHOKE_FADE_S = 0.01

# GM key -> instrument name, per kit folder. Keys left out play their
# class's first key. Names were read from each kit's drumkit.xml.
KIT_KEYS: dict[str, dict[int, str]] = {
    "BJA_Pacific": {
        36: "BassDrum", 38: "Snare", 40: "Snare Dry", 42: "Hi Hat Closed",
        46: "Hi Hat Opened", 43: "Floor Tom", 45: "Tom", 49: "Crash Left",
        57: "Crash Right", 55: "Crash Right", 52: "Crash Right", 51: "Ride", 59: "Ride 2",
        53: "Ride Bell"},
    "ColomboAcousticDrumkit": {
        36: "BassDrum", 37: "Stick", 38: "Snare Rock", 40: "Snare1", 42: "Closed HH",
        44: "Pedal HH", 46: "Open HH", 43: "Tom Low", 45: "Tom Mid", 47: "Tom Mid",
        48: "Tom Hi", 50: "Tom Hi", 49: "crash16inch", 55: "crash16inch",
        57: "crash20inch--2", 52: "crash20inch--2", 51: "ride-crash20inch",
        59: "ride-crash20inch", 53: "ride-cup"},
    "Millo_MultiLayered2": {
        36: "Kick", 37: "Stick", 38: "Snare Rock", 40: "Snare Jazz", 42: "Closed HH",
        44: "Pedal HH", 46: "Open HH", 43: "Tom Low", 45: "Tom Mid", 47: "Tom Mid",
        48: "Tom Hi", 50: "Tom Hi", 49: "Crash", 52: "Crash", 55: "Crash Jazz",
        57: "Crash Jazz", 51: "Ride Rock", 59: "Ride Jazz", 53: "Ride Jazz"},
    "Millo_MultiLayered3": {
        36: "Kick", 37: "Stick", 38: "Snare Rock", 42: "Closed HH", 44: "Pedal HH",
        46: "Open HH", 43: "Tom Low", 45: "Tom Mid", 47: "Tom Mid", 48: "Tom Hi",
        50: "Tom Hi", 49: "Crash", 51: "Ride Jazz"},
    "Millo-Drums_v.1": {
        36: "Kick", 37: "Stick", 38: "Snare Rock", 40: "Snare Jazz", 42: "Closed HH",
        44: "Pedal HH", 46: "Open HH", 43: "Tom Low", 45: "Tom Mid", 47: "Tom Mid",
        48: "Tom Hi", 50: "Tom Hi", 49: "Crash", 52: "Crash", 55: "Crash Jazz",
        57: "Crash Jazz", 51: "Ride Rock", 59: "Ride Jazz", 53: "Ride Jazz"},
    "rumpf_kit_z01_h2": {  # named by the key each sits on: "c3" is GM 36
        36: "c3 - bass drum 1", 37: "c#3 - stick", 38: "d3 - snare 1", 40: "e3 - snare 2",
        42: "f#3 - hi-hat closed", 44: "g#3 - hi-hat pedal", 46: "a#3 - hi-hat open",
        43: "b3 - low tom", 45: "c4 - middle tom", 47: "c4 - middle tom",
        48: "d4 - high tom", 50: "d4 - high tom", 49: "c#4 - crash", 55: "c#4 - crash",
        57: "e4 - cymbal 2", 52: "e4 - cymbal 2", 51: "d#4 - cymbal 1",
        59: "d#4 - cymbal 1", 53: "f4 - ride bell"},
    "ForzeeStereo": {
        36: 'Kick (Tama Superstar 22")', 37: "Rim Click (Pearl Free Floating Maple 14x3.5)",
        38: "Snare (Pearl Free Floating Maple 14x3.5)",
        40: "Snare Rimshot (Pearl Free Floating Maple 14x3.5)",
        42: 'Hi-Hat Closed (Paiste Alpha Metal edge 14")',
        44: 'Hi-Hat Pedal (Paiste Alpha Metal edge 14")',
        46: 'Hi-Hat Open (Paiste Alpha Metal edge 14")',
        43: 'Tom Low (Tama Superstar 16")', 45: 'Tom Mid (Tama Superstar 13")',
        47: 'Tom Mid (Tama Superstar 13")', 48: 'Tom High (Tama Superstar 12")',
        50: 'Tom High (Tama Superstar 12")', 49: 'Crash (Paiste Rude Thin 18")',
        55: 'Splash (Paiste Rude 10")', 57: 'Crash/Ride (Paiste Rude Crash/Ride 18")',
        52: 'China (Paiste Alpha 18")', 51: 'Ride Bow (Custom, Zagrebin 22")',
        59: 'Ride (Custom, Zagrebin 22")', 53: 'Ride Bell (Custom, Zagrebin 22")'},
}


@dataclass(frozen=True)
class Layer:
    path: Path
    low: float  # velocity range, 0..1
    high: float
    gain: float
    pitch: float  # semitones


@dataclass(frozen=True)
class KitInstrument:
    name: str
    volume: float
    layers: tuple[Layer, ...]


def kit_folder(name: str) -> Path:
    """The folder of kit `name` ("hydrogen:<folder>" or "<folder>")."""
    return KITS_DIR / name.removeprefix(PREFIX)


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element, name: str, default: str = "") -> str:
    for child in element:
        if _strip(child.tag) == name:
            return (child.text or "").strip()
    return default


def read_kit(folder: str | os.PathLike) -> dict[str, KitInstrument]:
    """The instruments of the Hydrogen kit in `folder`, by name (those with
    no sample left out). Reads both drumkit.xml layouts: <layer> elements,
    and the older single <filename> per instrument."""
    folder = Path(folder)
    try:
        root = ElementTree.parse(folder / "drumkit.xml").getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise InputMissingError(f"no readable Hydrogen kit at {folder}: {error}",
                                hint=f"apt-get install {PACKAGE}") from None
    instruments = {}
    for element in root.iter():
        if _strip(element.tag) != "instrument":
            continue
        layers = [Layer(folder / _child(layer, "filename"), float(_child(layer, "min", "0")),
                        float(_child(layer, "max", "1")), float(_child(layer, "gain", "1")),
                        float(_child(layer, "pitch", "0")))
                  for layer in element.iter() if _strip(layer.tag) == "layer"]
        if not layers and _child(element, "filename"):
            layers = [Layer(folder / _child(element, "filename"), 0.0, 1.0, 1.0, 0.0)]
        layers = [layer for layer in layers if layer.path.is_file()]
        if layers:
            name = _child(element, "name")
            instruments[name] = KitInstrument(name, float(_child(element, "volume", "1")),
                                              tuple(layers))
    return instruments


@lru_cache(maxsize=4096)
def _sample(path: Path, pitch: float, sample_rate_hz: int) -> np.ndarray:
    """A layer's sample as mono float32 at `sample_rate_hz`, shifted by
    `pitch` semitones (played faster or slower, as Hydrogen does)."""
    import soundfile
    import soxr

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    source_rate = rate * 2.0 ** (pitch / 12.0)
    if abs(source_rate - sample_rate_hz) > 1e-6:
        mono = soxr.resample(mono, source_rate, sample_rate_hz).astype(np.float32)
    mono.setflags(write=False)
    return mono


def _choose_layer(layers: tuple[Layer, ...], velocity: float,
                  rng: np.random.Generator) -> Layer:
    holding = [layer for layer in layers if layer.low <= velocity <= layer.high]
    if holding:
        return holding[int(rng.integers(len(holding)))]
    return min(layers, key=lambda layer: min(abs(layer.low - velocity),
                                             abs(layer.high - velocity)))


def key_instruments(kit: str, instruments: dict[str, KitInstrument],
                    classes: tuple[tuple[int, ...], ...]) -> dict[int, KitInstrument]:
    """Every key of `classes` -> the kit instrument that plays it. Raises
    MtoolsError when KIT_KEYS names an instrument the kit lacks."""
    names = KIT_KEYS[kit]
    missing = sorted(set(names.values()) - set(instruments))
    if missing:
        raise MtoolsError(f"Hydrogen kit {kit} has no instrument {missing[0]!r}")
    played = {}
    for keys in classes:
        first = names.get(keys[0])
        for key in keys:
            name = names.get(key, first)
            if name is not None:
                played[key] = instruments[name]
    return played


def render_hydrogen(score: Score, *, sample_rate_hz: int,
                    soundfont: str | os.PathLike, seed: int = 0) -> np.ndarray:
    """The drum notes of `score` as (samples, 2) float32 at
    `sample_rate_hz`, played by the Hydrogen kit whose drumkit.xml (or
    folder) is `soundfont`; layers drawn where ranges overlap depend on
    `seed` only."""
    from mtools.training.render_sources import DRUM_CLASSES

    folder = Path(soundfont)
    folder = folder.parent if folder.name == "drumkit.xml" else folder
    if folder.name not in KIT_KEYS:
        raise MtoolsError(f"no key map for Hydrogen kit {folder.name}",
                          hint="kits with a map: " + ", ".join(sorted(KIT_KEYS)))
    played = key_instruments(folder.name, read_kit(folder), DRUM_CLASSES)
    rng = np.random.default_rng(seed)
    notes = sorted((n for n in score.notes if n.is_drum and n.pitch in played),
                   key=lambda n: (n.start_s, n.pitch))
    hats = [n.start_s for n in notes if n.pitch in HI_HAT_KEYS]
    sounds = []
    for note in notes:
        instrument = played[note.pitch]
        velocity = note.velocity / 127.0
        layer = _choose_layer(instrument.layers, velocity, rng)
        sample = _sample(layer.path, layer.pitch, sample_rate_hz)
        start = round(note.start_s * sample_rate_hz)
        stop = start + len(sample)
        if note.pitch in OPEN_HI_HAT_KEYS:
            later = [t for t in hats if t > note.start_s]
            if later:
                stop = min(stop, round(later[0] * sample_rate_hz))
        sounds.append((start, stop, sample, velocity * layer.gain * instrument.volume))
    end_s = max([score.total_s] + [n.end_s for n in notes])
    length = max([round((end_s + render.RELEASE_TAIL_S) * sample_rate_hz)]
                 + [stop for _, stop, _, _ in sounds])
    mix = np.zeros(length, np.float32)
    fade = max(1, round(CHOKE_FADE_S * sample_rate_hz))
    for start, stop, sample, gain in sounds:
        part = sample[:stop - start] * np.float32(gain)
        if stop - start < len(sample):  # choked: fade the last CHOKE_FADE_S out
            part[-fade:] *= np.linspace(1.0, 0.0, min(fade, len(part)), dtype=np.float32)
        mix[start:start + len(part)] += part
    return np.repeat(mix[:, None], 2, axis=1)
