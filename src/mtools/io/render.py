"""Render a Score to stereo audio with a General MIDI soundfont, for
auditioning (`mtools convert x.mid --to wav`). Not a neural synthesizer: see
`mtools synth` for that.

The engine is tinysoundfont (no system libraries). Its wheel declares
pyaudio, which fails to build, so install it with
`pip install --no-deps tinysoundfont`; offline rendering never uses pyaudio.

Soundfont lookup order (`find_soundfont`):

1. the path given explicitly (`--soundfont PATH`);
2. the `MTOOLS_SOUNDFONT` environment variable;
3. system soundfonts: FluidR3_GM.sf2, then TimGM6mb.sf2, then any other .sf2
   in /usr/share/sounds/sf2 (Debian's fluid-soundfont-gm and
   timgm6mb-soundfont) or /usr/share/soundfonts;
4. TimGM6mb.sf2 shipped inside the pretty_midi package, found without
   importing pretty_midi.

Only SF2 files are searched for: tinysoundfont plays SF3 (Vorbis-compressed)
soundfonts far too quietly. An explicit path is used as given.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from mtools.errors import InputFormatError, InputMissingError, RuntimeUnavailableError
from mtools.score import Score, apply_sustain

RENDER_SAMPLE_RATE_HZ = 44100
RELEASE_TAIL_S = 1.0  # rendered after the last note so releases and reverb ring out
NORMALISED_PEAK = 0.99  # peak amplitude after normalising a mix that clips
DRUM_BANK = 128  # the GM percussion bank (MIDI channel 10 in a file)
PITCH_BEND_CENTER = 8192  # tinysoundfont wants 0..16383; Score bends are -8192..8191
CHANNEL_CONTROLS = (7, 10, 11)  # volume, pan, expression; sustain (64) is applied to notes

SOUNDFONT_ENV = "MTOOLS_SOUNDFONT"
SYSTEM_SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/soundfonts"))
PREFERRED_SOUNDFONTS = ("FluidR3_GM.sf2", "TimGM6mb.sf2")
PRETTY_MIDI_SOUNDFONT = "TimGM6mb.sf2"
TINYSOUNDFONT_INSTALL = "pip install --no-deps tinysoundfont"
SOUNDFONT_INSTALL_HINT = ("pip install --no-deps pretty_midi (ships TimGM6mb.sf2), "
                          "apt-get install timgm6mb-soundfont, or pass --soundfont PATH")

SOUNDFONT_SEARCH_HELP = (
    "Soundfont: --soundfont PATH (a bare file name is also looked for in the folders "
    "below), else $MTOOLS_SOUNDFONT, else FluidR3_GM.sf2, "
    "TimGM6mb.sf2 or another .sf2 in /usr/share/sounds/sf2 or /usr/share/soundfonts "
    "(apt-get install fluid-soundfont-gm or timgm6mb-soundfont), else the "
    "TimGM6mb.sf2 inside the pretty_midi package (pip install --no-deps pretty_midi). "
    "Use SF2: tinysoundfont plays SF3 far too quietly."
)

# Event kinds, in the order they apply when they fall on the same sample: a
# note ends before a new one starts, and controls are set before it starts.
_NOTE_OFF, _CONTROL, _PITCH_BEND, _NOTE_ON = range(4)


def find_soundfont(explicit: str | os.PathLike | None = None) -> Path:
    """The soundfont to render with, in the order the module docstring gives.

    Raises InputMissingError when the explicit path or $MTOOLS_SOUNDFONT names
    no file, RuntimeUnavailableError when the search finds nothing.
    """
    for origin, named in (("--soundfont", explicit),
                          (f"${SOUNDFONT_ENV}", os.environ.get(SOUNDFONT_ENV))):
        if named:
            path = Path(named).expanduser()
            if path.is_dir():
                raise InputMissingError(f"soundfont {named} (from {origin}): is a folder, "
                                        "not a .sf2 file")
            if not path.is_file() and path.name == named:  # a bare name: the system's folders
                path = next((folder / named for folder in SYSTEM_SOUNDFONT_DIRS
                             if (folder / named).is_file()), path)
            if not path.is_file():
                raise InputMissingError(f"soundfont {named} (from {origin}): no such file",
                                        hint=None if path.name != named else "looked in "
                                        + ", ".join(map(str, SYSTEM_SOUNDFONT_DIRS)))
            return path
    for folder in SYSTEM_SOUNDFONT_DIRS:
        found = _soundfont_in(folder)
        if found is not None:
            return found
    found = _pretty_midi_soundfont()
    if found is not None:
        return found
    raise RuntimeUnavailableError("no General MIDI soundfont found to render with",
                                  hint=SOUNDFONT_INSTALL_HINT)


def render_score(score: Score, *, sample_rate_hz: int = RENDER_SAMPLE_RATE_HZ,
                 soundfont: str | os.PathLike | None = None) -> np.ndarray:
    """Render `score` to (samples, 2) float32 stereo at `sample_rate_hz`.

    Each (instrument, program, is_drum) track plays its GM program; drums
    play from the percussion bank. Velocities, the sustain pedal (CC64,
    applied by lengthening held notes), volume/pan/expression controls and
    pitch bends are honoured. The audio lasts until the end of the score (or
    the last sustained note) plus RELEASE_TAIL_S. It is scaled down to
    NORMALISED_PEAK only if it would clip. `soundfont` overrides the search
    of `find_soundfont`.
    """
    if sample_rate_hz <= 0:
        raise ValueError("sample_rate_hz must be positive")
    tsf = _import_tinysoundfont()
    path = find_soundfont(soundfont)
    sustained = apply_sustain(score)
    end_s = max([score.total_s] + [n.end_s for n in sustained.notes])
    num_samples = round((end_s + RELEASE_TAIL_S) * sample_rate_hz)

    synth = tsf.Synth(samplerate=sample_rate_hz)
    try:
        sfid = synth.sfload(str(path))
    except RuntimeError as exc:
        raise InputFormatError(f"{path}: not a readable SF2 soundfont") from exc
    channels = _assign_channels(synth, sfid, sustained.notes)
    events = _events(sustained, channels, sample_rate_hz)
    audio = _render_events(synth, events, num_samples)  # (samples, 2)
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 1.0:
        audio *= NORMALISED_PEAK / peak
    return audio


# --- helpers -------------------------------------------------------------------


def _import_tinysoundfont():
    try:
        import tinysoundfont
    except ImportError as exc:
        raise RuntimeUnavailableError("rendering MIDI to audio needs tinysoundfont",
                                      hint=TINYSOUNDFONT_INSTALL) from exc
    return tinysoundfont


def _soundfont_in(folder: Path) -> Path | None:
    """The preferred .sf2 in `folder`, else the first other one by name."""
    for name in PREFERRED_SOUNDFONTS:
        if (folder / name).is_file():
            return folder / name
    try:
        others = sorted(p for p in folder.glob("*.sf2") if p.is_file())
    except OSError:
        return None
    return others[0] if others else None


def _pretty_midi_soundfont() -> Path | None:
    """pretty_midi's bundled TimGM6mb.sf2, located without importing it."""
    try:
        spec = importlib.util.find_spec("pretty_midi")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / PRETTY_MIDI_SOUNDFONT
        if candidate.is_file():
            return candidate
    return None


def _assign_channels(synth, sfid: int, notes) -> dict[tuple[int, int, bool], int]:
    """One synth channel per (instrument, program, is_drum) track, with its
    preset selected. tinysoundfont has no 16-channel limit, and it falls
    back to drum kit 0 by itself; a melodic program missing from the
    soundfont falls back to program 0."""
    tracks = sorted({(n.instrument, n.program, n.is_drum) for n in notes})
    channels = {}
    for channel, (instrument, program, is_drum) in enumerate(tracks):
        bank = DRUM_BANK if is_drum else 0
        try:
            synth.program_select(channel, sfid, bank, program, is_drums=is_drum)
        except RuntimeError:
            synth.program_select(channel, sfid, bank, 0, is_drums=is_drum)
        channels[(instrument, program, is_drum)] = channel
    return channels


def _events(score: Score, channels: dict, sample_rate_hz: int) -> list[tuple]:
    """(sample, kind, channel, a, b) tuples, sorted in playing order."""
    def at(time_s: float) -> int:
        return max(0, round(time_s * sample_rate_hz))

    events = []
    for note in score.notes:
        if not 0 <= note.pitch <= 127:
            continue
        channel = channels[(note.instrument, note.program, note.is_drum)]
        start = at(note.start_s)
        velocity = min(max(note.velocity, 1), 127)
        events.append((start, _NOTE_ON, channel, note.pitch, velocity))
        # Even a zero-length note must end after it starts, or it would hang.
        events.append((max(at(note.end_s), start + 1), _NOTE_OFF, channel, note.pitch, 0))
    for cc in score.control_changes:
        if cc.number in CHANNEL_CONTROLS:
            for channel in _track_channels(channels, cc.instrument, cc.is_drum):
                events.append((at(cc.time_s), _CONTROL, channel, cc.number, cc.value))
    for bend in score.pitch_bends:
        for channel in _track_channels(channels, bend.instrument, bend.is_drum):
            value = min(max(bend.bend + PITCH_BEND_CENTER, 0), 2 * PITCH_BEND_CENTER - 1)
            events.append((at(bend.time_s), _PITCH_BEND, channel, value, 0))
    events.sort()
    return events


def _track_channels(channels: dict, instrument: int, is_drum: bool) -> list[int]:
    return [ch for (inst, _, drum), ch in channels.items()
            if inst == instrument and drum == is_drum]


def _render_events(synth, events: list[tuple], num_samples: int) -> np.ndarray:
    """Render `num_samples` stereo frames, applying each event at its sample
    offset by rendering the span before it straight into the output."""
    audio = np.zeros((num_samples, 2), dtype=np.float32)
    position = 0
    for sample, kind, channel, a, b in events + [(num_samples, None, 0, 0, 0)]:
        sample = min(sample, num_samples)
        if sample > position:
            synth.generate_simple(sample - position,
                                  buffer=memoryview(audio[position:sample]).cast("B"))
            position = sample
        if kind == _NOTE_ON:
            synth.noteon(channel, a, b)
        elif kind == _NOTE_OFF:
            synth.noteoff(channel, a)
        elif kind == _CONTROL:
            synth.control_change(channel, a, b)
        elif kind == _PITCH_BEND:
            synth.pitchbend(channel, a)
    return audio
