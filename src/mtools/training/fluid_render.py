"""Rendering training audio with FluidSynth (pyfluidsynth over Debian's
libfluidsynth3), for soundfonts tinysoundfont plays wrongly: MuseScore
General's piano comes out of tinysoundfont with louder velocities quieter
and its top octaves as noise (measured, see `render_sources`), while
FluidSynth honours its velocity layers and filters. Same event semantics
as `mtools.io.render.render_score`: the sustain pedal lengthens notes,
volume/pan/expression and pitch bends apply; FluidSynth's own reverb and
chorus are off (training adds its own rooms)."""

from __future__ import annotations

import os

import numpy as np

from mtools.errors import RuntimeUnavailableError
from mtools.io import render
from mtools.score import Score, apply_sustain

INSTALL_HINT = "apt-get install libfluidsynth3 && pip install pyfluidsynth"
DRUM_CHANNEL = 9
CHANNELS = 16
INT16_FULL_SCALE = 32768.0


def _import_fluidsynth():
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:  # OSError: the shared library is missing
        raise RuntimeUnavailableError(f"FluidSynth is not available ({exc})",
                                      hint=INSTALL_HINT) from None
    return fluidsynth


def render_fluidsynth(score: Score, *, sample_rate_hz: int,
                      soundfont: str | os.PathLike) -> np.ndarray:
    """`score` as (samples, 2) float32 stereo at `sample_rate_hz`, lasting
    until its last (sustained) note ends plus render.RELEASE_TAIL_S."""
    fluidsynth = _import_fluidsynth()
    sustained = apply_sustain(score)
    end_s = max([score.total_s] + [n.end_s for n in sustained.notes])
    num_samples = round((end_s + render.RELEASE_TAIL_S) * sample_rate_hz)
    synth = fluidsynth.Synth(samplerate=float(sample_rate_hz), gain=0.5)
    try:
        synth.setting("synth.reverb.active", 0)
        synth.setting("synth.chorus.active", 0)
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            raise RuntimeUnavailableError(f"{soundfont}: FluidSynth cannot load it")
        channels = _assign_channels(synth, sfid, sustained.notes)
        events = render._events(sustained, channels, sample_rate_hz)
        return _play(synth, events, num_samples)
    finally:
        synth.delete()


def _assign_channels(synth, sfid: int, notes) -> dict[tuple[int, int, bool], int]:
    """A MIDI channel per (instrument, program, is_drum) track: drums on
    channel 10, the others in order (tracks beyond 15 share the last)."""
    channels, free = {}, [c for c in range(CHANNELS) if c != DRUM_CHANNEL]
    for instrument, program, is_drum in sorted({(n.instrument, n.program, n.is_drum)
                                                for n in notes}):
        channel = DRUM_CHANNEL if is_drum else free[min(len(channels), len(free) - 1)]
        bank = render.DRUM_BANK if is_drum else 0
        if synth.program_select(channel, sfid, bank, program) != 0:  # not in this soundfont
            synth.program_select(channel, sfid, bank, 0)
        channels[(instrument, program, is_drum)] = channel
    return channels


def _play(synth, events: list[tuple], num_samples: int) -> np.ndarray:
    audio = np.zeros((num_samples, 2), np.float32)
    position = 0
    for sample, kind, channel, a, b in events + [(num_samples, None, 0, 0, 0)]:
        sample = min(sample, num_samples)
        if sample > position:
            block = np.asarray(synth.get_samples(sample - position), np.float32)
            audio[position:sample] = block.reshape(-1, 2) / INT16_FULL_SCALE
            position = sample
        if kind == render._NOTE_ON:
            synth.noteon(channel, a, b)
        elif kind == render._NOTE_OFF:
            synth.noteoff(channel, a)
        elif kind == render._CONTROL:
            synth.cc(channel, a, b)
        elif kind == render._PITCH_BEND:
            synth.pitch_bend(channel, a - render.PITCH_BEND_CENTER)
    return audio
