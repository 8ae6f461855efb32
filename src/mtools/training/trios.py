"""Trio data for MusicVAE's trio_16bar: no corpus here holds melody, bass
and drums together, so they are made. Each lead sheet in 4/4 or 2/4
(melody plus a chord per step, `corpora.load_lead_sheets`) has its chords
played by MMA (Musical MIDI Accompaniment, Debian's `mma`) in two of
GROOVES, chosen by a hash of the piece; the groove's bass line and drum
kit, on the 16th-note grid, join the tune's own melody. The result is
cached under ~/.cache/mtools/data like the parsed corpora."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mtools.errors import MtoolsError, RuntimeUnavailableError
from mtools.models.chords import NOTE_NAMES, chord_quality
from mtools.models.interpolation import pad_events, trio_events
from mtools.score import Score
from mtools.training import corpora

FORMAT = 3  # 2: bass and drums read as `mtools interpolate` reads a trio; 3: MMA seeded
#              per tune and groove (its grooves draw random timing, volume and
#              skipped notes, which changed the data from build to build)
QPM = 120.0  # what MMA plays at; the grid does not depend on it
TAKES = 2  # grooves per tune
STEPS_PER_BEAT = 4
# MMA grooves of the standard library that play a drum kit (three kinds of
# drum or more) and a bass in 4/4, checked one by one with mma 16.06.
GROOVES = ("8Beat", "8Beat1", "BasicRock", "50sRock", "60sRock", "FolkRock", "SoftRock",
           "Rock128", "RockBallad", "BubbleRock", "Swing", "EasySwing", "Foxtrot", "Quickstep",
           "Jive", "Shuffleboggie", "Ska", "Ballad", "PopBallad", "PianoBallad", "Blues",
           "CountryBlues", "Calypso", "Merengue", "Samba")
_KIND_SUFFIX = {"major": "", "minor": "m", "diminished": "dim", "augmented": "aug"}

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, eq=False)
class TrioLine:
    """A tune with its made accompaniment: events (steps, 3) int16 of
    melody events, bass events (NO_EVENT / NOTE_OFF / pitch) and drum
    bitmasks on the 16th-note grid, 16 steps a bar."""

    events: np.ndarray
    piece: str
    groove: str
    part: str = ""
    steps_per_bar: int = 16


def mma_chord(row) -> str:
    """An MMA chord name for a chord row (root, mask, bass): root and
    quality, a dominant 7th kept ("z" is MMA's no chord)."""
    root, mask = int(row[0]), int(row[1])
    if root < 0:
        return "z"
    quality = chord_quality(root, mask)
    suffix = _KIND_SUFFIX.get(quality, "m" if mask >> ((root + 3) % 12) & 1 else "")
    if quality == "major" and mask >> ((root + 10) % 12) & 1:
        suffix = "7"
    return NOTE_NAMES[root] + suffix


def chord_chart(chords: np.ndarray, groove: str, seed: int = 0) -> str:
    """MMA source playing chord rows (steps, 3), one chord a beat, in 4/4
    bars (a 2/4 tune's bars go two to a 4/4 bar), its random choices fixed
    by `seed` (MMA's RndSeed: the same chart plays the same every time)."""
    beats = [mma_chord(row) for row in chords[::STEPS_PER_BEAT]]
    beats += [beats[-1]] * (-len(beats) % 4)
    lines = [f"RndSeed {seed}", f"Tempo {QPM:g}", "Time 4", f"Groove {groove}"]
    lines += [f"{bar + 1} " + " ".join(beats[4 * bar:4 * bar + 4]) for bar in range(len(beats) // 4)]
    return "\n".join(lines) + "\n"


def play_chart(chart: str) -> Score:
    """The MIDI MMA makes of a chart, as a Score. RuntimeUnavailableError
    without mma; MtoolsError when mma fails."""
    from mtools.io.midi import midi_to_score

    if shutil.which("mma") is None:
        raise RuntimeUnavailableError("making trio data needs MMA", hint="apt-get install mma")
    with tempfile.TemporaryDirectory() as folder:
        source, midi = Path(folder) / "tune.mma", Path(folder) / "tune.mid"
        source.write_text(chart)
        done = subprocess.run(["mma", "-f", str(midi), str(source)], capture_output=True,
                              text=True, timeout=120)
        if done.returncode or not midi.is_file():
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise MtoolsError(f"mma failed: {last[0]}")
        return midi_to_score(midi.read_bytes())


def accompaniment_events(score: Score, num_steps: int) -> np.ndarray:
    """(num_steps, 2) bass events (its General MIDI bass track's top line)
    and drum bitmasks of an MMA score, as `mtools interpolate` reads a
    trio's, cut or padded to num_steps."""
    events = trio_events(score, STEPS_PER_BEAT)[1][:num_steps]
    return pad_events(events, num_steps, "trio")[:, 1:].astype(np.int16)


def chart_seed(piece: str, groove: str) -> int:
    """MMA's random seed for a piece played in a groove, fixed by both names."""
    return int(hashlib.sha1(f"{piece}/{groove}/seed".encode()).hexdigest()[:8], 16)


def grooves_for(piece: str, takes: int = TAKES) -> list[str]:
    """`takes` different grooves for a piece, fixed by its name."""
    order = sorted(GROOVES, key=lambda g: hashlib.sha1(f"{piece}/{g}".encode()).hexdigest())
    return order[:takes]


def trio_lines(sheet, takes: int = TAKES) -> list[TrioLine]:
    """The trios of one lead sheet (4/4 or 2/4; others give none)."""
    melody = sheet.melody
    if melody.steps_per_bar not in (8, 16) or not np.any(sheet.chords[:, 0] >= 0):
        return []
    steps = len(melody.events)
    lines = []
    for groove in grooves_for(sheet.piece, takes):
        chart = chord_chart(sheet.chords, groove, chart_seed(sheet.piece, groove))
        backing = accompaniment_events(play_chart(chart), steps)
        events = np.concatenate([np.asarray(melody.events, np.int16)[:, None], backing], axis=1)
        lines.append(TrioLine(events, sheet.piece, groove, sheet.part))
    return lines


@functools.lru_cache(maxsize=1)
def mma_version() -> str | None:
    """The installed MMA's version ("21.09"), None without mma. Another
    version may play the same seeded chart differently."""
    if shutil.which("mma") is None:
        return None
    done = subprocess.run(["mma", "-v"], capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    return lines[-1].strip() if done.returncode == 0 and lines else None


def cached_mma_version(source: str = "nottingham") -> str | None:
    """The MMA version that made the cached trios of a source (None: no
    cache, or one made before the version was recorded)."""
    path = corpora.cache_paths("trios", source)[0]
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as arrays:
        return json.loads(str(arrays["recipe"])).get("mma")


def load_trios(source: str = "nottingham", *, progress: Progress | None = None,
               refresh: bool = False) -> list[TrioLine]:
    """Every trio of a source's lead sheets (parsed, or read from their
    cache, first), made once and cached. A tune MMA cannot play is left
    out and listed in the cache's `skipped`. The cache records the MMA
    version that made it; another installed version makes the trios again
    (without mma the cache is read as it is)."""
    sheets = corpora.load_lead_sheets(source, progress=progress)
    path = corpora.cache_paths("trios", source)[0]
    recipe = {"format": FORMAT, "grooves": list(GROOVES), "takes": TAKES,
              "lead_sheets": (corpora.read_manifest("lead_sheets", source) or {}).get("fingerprint")}
    installed = mma_version()
    if not refresh and path.is_file():
        with np.load(path, allow_pickle=False) as arrays:
            cached = json.loads(str(arrays["recipe"]))
            made_by = cached.pop("mma", None)
            if cached == recipe and (installed is None or made_by == installed):
                return _unpack(arrays)
    recipe["mma"] = installed
    lines, skipped, started = [], [], time.monotonic()
    for index, sheet in enumerate(sheets):
        try:
            lines += trio_lines(sheet)
        except RuntimeUnavailableError:
            raise
        except MtoolsError as exc:
            skipped.append(f"{sheet.piece}: {exc}")
        if progress is not None:
            progress(index + 1, len(sheets), f"MMA accompaniments of {source}")
    from mtools.io.streams import atomic_write

    buffer = io.BytesIO()
    np.savez(buffer, recipe=json.dumps(recipe), seconds=time.monotonic() - started,
             skipped=np.array(skipped, dtype=str),
             events=np.concatenate([line.events for line in lines]) if lines
             else np.zeros((0, 3), np.int16),
             lengths=np.array([len(line.events) for line in lines], np.int64),
             pieces=np.array([line.piece for line in lines]),
             grooves=np.array([line.groove for line in lines]),
             parts=np.array([line.part for line in lines]))
    atomic_write(path, buffer.getvalue())
    return lines


def _unpack(arrays) -> list[TrioLine]:
    bounds = np.concatenate([[0], np.cumsum(arrays["lengths"])])
    events = arrays["events"]
    return [TrioLine(events[bounds[i]:bounds[i + 1]], str(piece), str(groove), str(part))
            for i, (piece, groove, part) in enumerate(zip(arrays["pieces"], arrays["grooves"],
                                                          arrays["parts"]))]

