"""Rendering training audio with TiMidity++ (Debian's `timidity`) and
Gravis-patch sets such as `freepats`: a sample set no soundfont here
shares, so another piano and drum kit to train on. Same event semantics as
`mtools.io.render.render_score`: the sustain pedal lengthens notes before
anything is played (TiMidity never sees the pedal), and TiMidity's reverb
and chorus are off (training adds its own rooms). The audio starts at the
score's time 0 (initial silence kept) and lasts until the last note ends
plus render.RELEASE_TAIL_S."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from mtools.errors import MtoolsError, RuntimeUnavailableError
from mtools.io import render
from mtools.score import Score, apply_sustain

INSTALL_HINT = "apt-get install timidity freepats"
SUSTAIN_CC = 64


def render_timidity(score: Score, *, sample_rate_hz: int,
                    soundfont: str | os.PathLike) -> np.ndarray:
    """`score` as (samples, 2) float32 stereo at `sample_rate_hz`, played by
    TiMidity++ with the patch set its config file `soundfont` names."""
    import soundfile

    from mtools.io.midi import score_to_midi

    if shutil.which("timidity") is None:
        raise RuntimeUnavailableError("TiMidity++ is not installed", hint=INSTALL_HINT)
    sustained = apply_sustain(score)
    sustained = replace(sustained, control_changes=tuple(
        c for c in sustained.control_changes if c.number != SUSTAIN_CC))
    end_s = max([score.total_s] + [n.end_s for n in sustained.notes])
    num_samples = round((end_s + render.RELEASE_TAIL_S) * sample_rate_hz)
    with tempfile.TemporaryDirectory() as folder:
        midi, wav = Path(folder) / "take.mid", Path(folder) / "take.wav"
        midi.write_bytes(score_to_midi(sustained))
        done = subprocess.run(
            ["timidity", "-c", str(soundfont), "--preserve-silence", "-EFreverb=d",
             "-EFchorus=d", "-s", str(sample_rate_hz), "-Ow", "-o", str(wav), str(midi)],
            capture_output=True, text=True, timeout=3600)
        if done.returncode or not wav.is_file():
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise MtoolsError(f"timidity failed: {last[0]}")
        audio, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
    if rate != sample_rate_hz:
        raise MtoolsError(f"timidity wrote {rate} Hz, not {sample_rate_hz}")
    out = np.zeros((num_samples, 2), np.float32)
    kept = min(num_samples, len(audio))
    out[:kept] = audio[:kept, :2] if audio.shape[1] >= 2 else audio[:kept, :1]
    return out
