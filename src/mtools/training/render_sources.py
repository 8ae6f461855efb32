"""What the transcription models train on: for each instrument, the
performances (MIDI with their split), how a performance is prepared for
rendering, the soundfonts that play it and the one held out, and the front
end and keys of its model. `mtools.training.renders` renders and caches
them.

Pianos, measured with single notes (pitches 21..108) and against the 2 s
of real MAESTRO audio in maestro_excerpt rendered from its own MIDI:

- FluidR3_GM.sf2 ("Yamaha Grand Piano", tinysoundfont): every key at its
  pitch (>= 95 % of the energy on harmonics); log-mel correlation with the
  real recording 0.62 (0.88 after a per-band gain fit). Program 1 plays the
  same samples, ~6 dB louder.
- TimGM6mb.sf2 ("Piano 1"): small but correct (>= 99 % harmonic); 0.68
  with the real recording (0.92 after the gain fit): held out.
- MuseScore General (Lite SF3, and its lossless SF2) is broken in
  tinysoundfont: louder velocities sound quieter, and from pitch 84 up
  almost all its energy lies below half the fundamental. FluidSynth plays
  the lossless SF2 right: >= 0.94 harmonic from pitch 21 to 96, velocity
  100 13-19 dB above velocity 40 with another timbre (velocity layers).
- sf_GMbank.sf2 (csound-soundfont) is left out: its drum kit renders
  identically to TimGM6mb's (correlation 1.0) and its piano is the one
  closest to TimGM6mb's (mean log-mel distance 0.7-1.5 against 1.0-2.2 to
  FluidR3_GM, pitches 36-84): training on it would leak the held-out font.
- FluidR3_GS.sf2 holds no piano (33 sound effects).
- freepats (Gravis patches, played by TiMidity++): its own piano samples,
  every key at its pitch, the pedal as the labels have it. Mean
  |log-mel difference| between fonts on loudness-normalised notes (pitches
  36-84, velocity 80): freepats-TimGM6mb 1.91, freepats-FluidR3 2.39,
  freepats-MuseScore 1.57, against sf_GMbank-TimGM6mb 0.78 (the leak) and
  MuseScore-TimGM6mb 1.57: a timbre of its own, so it trains (2026-12-02).

Drums: FluidR3_GM's kits (tinysoundfont), the AVL Drumkits Black Pearl and
Red Zeppelin (acoustic kits sampled by x42; tinysoundfont plays them,
FluidSynth is silent with them), MuseScore General's kits (FluidSynth) and
five Hydrogen kits of recorded samples (HYDROGEN_TRAIN_KITS, played by
mtools.training.hydrogen_render) train; TimGM6mb's kit is held out, and so
is the Hydrogen kit ForzeeStereo (a recorded acoustic kit: a second
held-out kit the card reports). Hydrogen's "The Black Pearl 1.0" is left
out: it is the AVL Black Pearl's author's kit, likely the same recordings.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Union

from mtools.errors import InputMissingError, UsageError
from mtools.models.transcription import FrontEnd, KeySpace
from mtools.score import PitchBend, Score
from mtools.training import corpora
from mtools.training.hydrogen_render import PREFIX as HYDROGEN_PREFIX
from mtools.training.salamander_render import NAME as SALAMANDER

PARTS = ("train", "valid")
FLUIDSYNTH_SOUNDFONTS = ("MuseScore_General_Full.sf2",)  # tinysoundfont plays them wrongly
TIMIDITY_CONFIGS = ("freepats.cfg",)  # patch sets TiMidity++ plays, by config file
TIMIDITY_DIR = Path("/etc/timidity")
SOUNDFONT_PACKAGES = {"FluidR3_GM.sf2": "fluid-soundfont-gm",
                      "freepats.cfg": "timidity freepats",
                      "TimGM6mb.sf2": "timgm6mb-soundfont",
                      "MuseScore_General_Full.sf2": "musescore-general-soundfont-lossless",
                      "Black_Pearl_4_LV2.sf2": "avldrums.lv2-soundfont",
                      "Red_Zeppelin_4_LV2.sf2": "avldrums.lv2-soundfont"}
# Hydrogen kits (mtools.training.hydrogen_render) that drum training plays.
HYDROGEN_TRAIN_KITS = ("BJA_Pacific", "ColomboAcousticDrumkit", "Millo_MultiLayered2",
                       "Millo_MultiLayered3", "Millo-Drums_v.1")
BEND_RANGE_CENTS = 200.0  # the synthesizers' default pitch-bend range: +-2 semitones
BEND_FULL_SCALE = 8192  # Score bends are -8192..8191
ASAP_FOLDER = "asap_performance_midi"
GROOVE_FOLDER = "groove_midi"
REPEAT_VARIANT = re.compile(r"_(no_(\d+_)?repeat|repeat|no_trio)$")
# Groove MIDI's e-kit keys that General MIDI kits lack, played as their GM kin.
GROOVE_TO_GM = {22: 42, 26: 46, 58: 43}
# Eight drum classes; a transcribed hit is written as its class's first key.
DRUM_CLASSES = ((36, 35), (38, 40, 37, 39), (42, 44, 22), (46, 26), (43, 58, 41),
                (45, 47, 48, 50), (49, 55, 57, 52), (51, 59, 53))

Source = tuple[str, Union[Path, Score]]  # (piece, performance MIDI path or Score)


@dataclass(frozen=True)
class Take:
    """How one performance is rendered."""

    soundfont: str
    program: int
    detune_cents: float = 0.0


@dataclass(frozen=True)
class Instrument:
    """Everything rendering knows about one transcription model's data.
    programs: GM programs (pianos) or drum kits (bank 128) drawn for
    training; detune: whether training takes are detuned (pitched
    instruments); model: the transcription model trained on it; corpus
    names the data sources(part) lists as (piece, MIDI path);
    prepare(score, take) is the score as rendered (its labels come from
    it); test_soundfonts: further held-out soundfonts (or kits) the card
    also scores on."""

    name: str
    model: str
    corpus: str
    front_end: FrontEnd
    keys: KeySpace
    train_soundfonts: tuple[str, ...]
    valid_soundfont: str
    programs: tuple[int, ...]
    valid_program: int
    detune: bool
    sources: Callable[[str], list[Source]]
    prepare: Callable[[Score, Take], Score]
    test_soundfonts: tuple[str, ...] = ()

    def held_out(self) -> tuple[str, ...]:
        """Every soundfont training never hears: validation's, then the others."""
        return (self.valid_soundfont, *self.test_soundfonts)


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise UsageError(f"unknown part {part!r}", hint="use 'train' or 'valid'")


def _csv_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise InputMissingError(f"{path}: {exc.strerror}") from None


def asap_performances(part: str) -> list[Source]:
    """(piece folder, performance MIDI path) of every ASAP performance in
    `part` ("train" or "valid"), sorted; split by piece_id."""
    _check_part(part)
    root = corpora.data_root() / ASAP_FOLDER
    return sorted((row["folder"], root / row["midi_performance"])
                  for row in _csv_rows(root / "metadata.csv")
                  if corpora.piece_part(piece_id(row["folder"])) == part)


def piece_id(folder: str) -> str:
    """The piece an ASAP folder holds: its variants with and without
    repeats (`..._repeat`, `..._no_repeat`, `..._no_2_repeat`) or the trio
    (`..._no_trio`) are the same piece, so they share a split part."""
    return REPEAT_VARIANT.sub("", folder)


def groove_performances(part: str) -> list[Source]:
    """(drummer/session/id, MIDI path) of the Groove MIDI performances of
    its own split: train, or validation as "valid" (its test split is not
    here)."""
    _check_part(part)
    root = corpora.data_root() / GROOVE_FOLDER
    wanted = "train" if part == "train" else "validation"
    return sorted((row["id"], root / row["midi_filename"])
                  for row in _csv_rows(root / "info.csv") if row["split"] == wanted)


def prepare_piano(score: Score, take: Take) -> Score:
    """Every note on `take.program` (drums dropped), its pitch bends
    replaced by one detuning bend per track at 0 s."""
    notes = tuple(replace(n, program=take.program) for n in score.notes if not n.is_drum)
    bends = ()
    if take.detune_cents:
        bend = round(take.detune_cents / BEND_RANGE_CENTS * BEND_FULL_SCALE)
        bend = min(max(bend, -BEND_FULL_SCALE), BEND_FULL_SCALE - 1)
        bends = tuple(PitchBend(0.0, bend, take.program, instrument)
                      for instrument in sorted({n.instrument for n in notes}))
    return replace(score, notes=notes, pitch_bends=bends)


def prepare_drums(score: Score, take: Take) -> Score:
    """The drum notes alone, on kit `take.program`, e-kit keys as their
    General MIDI kin (GROOVE_TO_GM); no pitch bends."""
    notes = tuple(replace(n, program=take.program, pitch=GROOVE_TO_GM.get(n.pitch, n.pitch))
                  for n in score.notes if n.is_drum)
    return replace(score, notes=notes, pitch_bends=())


PIANO = Instrument(
    "piano", "onsets_frames", "asap", FrontEnd(), KeySpace(),
    ("FluidR3_GM.sf2", "MuseScore_General_Full.sf2", "freepats.cfg"),
    "TimGM6mb.sf2", (0, 1), 0, True, asap_performances, prepare_piano,
    (SALAMANDER,))

DRUMS = Instrument(
    "drums", "onsets_frames_drums", "groove",
    FrontEnd(sample_rate_hz=44_100, hop_samples=441, fft_samples=2048, mel_bins=229,
             fmin_hz=30.0, fmax_hz=16_000.0),
    KeySpace.drums(DRUM_CLASSES),
    ("FluidR3_GM.sf2", "Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2",
     "MuseScore_General_Full.sf2", *(HYDROGEN_PREFIX + kit for kit in HYDROGEN_TRAIN_KITS)),
    "TimGM6mb.sf2", (0, 8, 16, 24, 25, 32, 40), 0, False, groove_performances, prepare_drums,
    (HYDROGEN_PREFIX + "ForzeeStereo",))

INSTRUMENTS = {instrument.model: instrument for instrument in (PIANO, DRUMS)}  # by model name
