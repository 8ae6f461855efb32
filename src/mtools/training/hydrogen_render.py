"""Rendering drum training audio from Hydrogen drum kits (Debian's
`hydrogen-drumkits`): recorded acoustic kits, WAV/FLAC/AIFF samples with
velocity layers, a timbre variety the General MIDI soundfonts lack.

A kit is its folder's drumkit.xml: instruments by name, each with a volume, a gain
and layers (sample file, velocity range in 0..1, gain, pitch in
semitones). Hydrogen kits carry no General MIDI map that all of them
share, so KIT_KEYS names, per kit, the instrument each GM drum key plays;
a key a kit does not name plays its class's first key (DRUM_CLASSES).

A note plays the first layer (in drumkit.xml's order) whose velocity
range holds velocity/127, the nearest where none holds it, scaled by
velocity/127, the layer's gain and the instrument's gain and volume, as
Hydrogen's sampler does. A ringing open hi-hat stops at the next hi-hat
hit (a 10 ms fade), as the pedal closes it. The audio starts at the
score's time 0 and lasts until the last note ends plus
render.RELEASE_TAIL_S or the last sample stops, whichever is later;
samples are mixed to mono (both channels of the returned array are the
same), and a mix that would clip is scaled to render.NORMALISED_PEAK, as
render_score does."""

from __future__ import annotations

import bisect
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtools.errors import InputFormatError, InputMissingError, MtoolsError
from mtools.io import render
from mtools.score import Score
from mtools.training.sample_player import finished, load_sample

KITS_DIR = Path("/usr/share/hydrogen/data/drumkits")
PACKAGE = "hydrogen-drumkits"
PREFIX = "hydrogen:"  # a Take's soundfont "hydrogen:<kit folder>" plays that kit
HI_HAT_KEYS = frozenset({42, 44, 46, 22, 26})
OPEN_HI_HAT_KEYS = frozenset({46, 26})
CHOKE_FADE_S = 0.01
RENDERER_VERSION = 2  # change whenever the rendering rules change (renders rebuild)

# GM key -> instrument name, per kit folder. Keys left out play their
# class's first key. Names were read from each kit's drumkit.xml, sounds
# checked by their spectra. Groove was recorded on a Roland TD-11, whose
# keys 55 and 52 are crash edges (not GM's splash and china; they carry far
# more of its crash hits than 49), 59 the ride's edge and 40 the snare's
# rim: each plays a crash, ride or snare here. Left out: rumpf_kit_z01_h2
# (its samples, cut from beat recordings, do not sound as named: its
# "cymbals" and toms are low booms) and The Black Pearl 1.0 (Glen
# MacArthur's, as is the AVL Black Pearl soundfont drum training plays).
MILLO_KEYS = {
    36: "Kick", 37: "Stick", 38: "Snare Rock", 40: "Snare Jazz", 42: "Closed HH",
    44: "Pedal HH", 46: "Open HH", 43: "Tom Low", 45: "Tom Mid", 47: "Tom Mid",
    48: "Tom Hi", 50: "Tom Hi", 49: "Crash", 52: "Crash", 55: "Crash Jazz",
    57: "Crash Jazz", 51: "Ride Rock", 59: "Ride Jazz", 53: "Ride Jazz"}
KIT_KEYS: dict[str, dict[int, str]] = {
    "BJA_Pacific": {
        36: "BassDrum", 38: "Snare", 40: "Snare", 42: "Hi Hat Closed",
        46: "Hi Hat Opened", 43: "Floor Tom", 45: "Tom", 49: "Crash Left",
        57: "Crash Right", 55: "Crash Right", 52: "Crash Right", 51: "Ride", 59: "Ride 2",
        53: "Ride Bell"},
    "ColomboAcousticDrumkit": {
        36: "BassDrum", 37: "Stick", 38: "Snare Rock", 40: "Snare1", 42: "Closed HH",
        44: "Closed HH", 46: "Open HH", 43: "Tom Low", 45: "Tom Mid", 47: "Tom Mid",
        48: "Tom Hi", 50: "Tom Hi", 49: "crash16inch", 55: "crash16inch",
        57: "crash20inch--2", 52: "crash20inch--2", 51: "ride-crash20inch",
        59: "ride-crash20inch", 53: "ride-cup"},
    "Millo_MultiLayered2": MILLO_KEYS,
    "Millo-Drums_v.1": MILLO_KEYS,  # the same instrument names, other samples
    "Millo_MultiLayered3": {
        36: "Kick", 37: "Stick", 38: "Snare Rock", 42: "Closed HH", 44: "Pedal HH",
        46: "Open HH", 43: "Tom Low", 45: "Tom Mid", 47: "Tom Mid", 48: "Tom Hi",
        50: "Tom Hi", 49: "Crash", 51: "Ride Jazz"},
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
        55: 'Crash (Paiste Rude Thin 18")', 57: 'Crash/Ride (Paiste Rude Crash/Ride 18")',
        52: 'Crash/Ride (Paiste Rude Crash/Ride 18")', 51: 'Ride Bow (Custom, Zagrebin 22")',
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
    level: float  # the instrument's volume times its gain
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
    and the older single <filename> per instrument. Raises
    InputMissingError for a missing or unparsable drumkit.xml,
    InputFormatError for a number field that is not one."""
    folder = Path(folder)
    try:
        root = ElementTree.parse(folder / "drumkit.xml").getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise InputMissingError(f"no readable Hydrogen kit at {folder}: {error}",
                                hint=f"apt-get install {PACKAGE}") from None
    try:
        return _instruments(root, folder)
    except ValueError as error:  # a number field that is not one
        raise InputFormatError(f"malformed Hydrogen kit at {folder}: {error}") from None


def _instruments(root, folder: Path) -> dict[str, KitInstrument]:
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
            level = float(_child(element, "volume", "1")) * float(_child(element, "gain", "1"))
            instruments[name] = KitInstrument(name, level, tuple(layers))
    return instruments


def choose_layer(layers: tuple[Layer, ...], velocity: float) -> Layer:
    """The first layer whose range holds `velocity` (0..1), else the nearest."""
    for layer in layers:
        if layer.low <= velocity <= layer.high:
            return layer
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
                    soundfont: str | os.PathLike) -> np.ndarray:
    """The drum notes of `score` as (samples, 2) float32 at
    `sample_rate_hz`, played by the Hydrogen kit whose drumkit.xml (or
    folder) is `soundfont`."""
    from mtools.training.render_sources import DRUM_CLASSES

    folder = Path(soundfont)
    folder = folder.parent if folder.name == "drumkit.xml" else folder
    if folder.name not in KIT_KEYS:
        raise MtoolsError(f"no key map for Hydrogen kit {folder.name}",
                          hint="kits with a map: " + ", ".join(sorted(KIT_KEYS)))
    played = key_instruments(folder.name, read_kit(folder), DRUM_CLASSES)
    notes = sorted((n for n in score.notes if n.is_drum and n.pitch in played),
                   key=lambda n: (n.start_s, n.pitch))
    hats = [n.start_s for n in notes if n.pitch in HI_HAT_KEYS]  # in time order
    sounds = []
    for note in notes:
        instrument = played[note.pitch]
        velocity = note.velocity / 127.0
        layer = choose_layer(instrument.layers, velocity)
        sample = load_sample(layer.path, layer.pitch, sample_rate_hz)
        start = round(note.start_s * sample_rate_hz)
        stop = start + len(sample)
        if note.pitch in OPEN_HI_HAT_KEYS:
            later = bisect.bisect_right(hats, note.start_s)
            if later < len(hats):
                stop = min(stop, round(hats[later] * sample_rate_hz))
        sounds.append((start, stop, sample, velocity * layer.gain * instrument.level))
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
    return finished(mix)
