"""What the sample-based renderers (hydrogen_render, salamander_render)
share: a sample file read once as mono audio at the rate asked, played
faster or slower for a pitch shift, and the finished mix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from mtools.io import render


@lru_cache(maxsize=4096)
def load_sample(path: Path, semitones: float, sample_rate_hz: int,
                attack_fraction: float = 0.0, pre_attack_s: float = 0.0) -> np.ndarray:
    """The sample at `path` as read-only mono float32 at `sample_rate_hz`,
    played `semitones` higher (faster, as samplers do). With an
    `attack_fraction`, it starts `pre_attack_s` before the first point
    reaching that fraction of its peak (its leading silence cut)."""
    import soundfile
    import soxr

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    loud = np.abs(mono) >= attack_fraction * float(np.abs(mono).max(initial=0.0))
    mono = mono[max(0, int(np.argmax(loud)) - round(pre_attack_s * rate)):]
    source_rate = rate * 2.0 ** (semitones / 12.0)
    if abs(source_rate - sample_rate_hz) > 1e-6:
        mono = soxr.resample(mono, source_rate, sample_rate_hz).astype(np.float32)
    mono.setflags(write=False)
    return mono


def finished(mix: np.ndarray) -> np.ndarray:
    """A mono mix as (samples, 2) float32, scaled to render.NORMALISED_PEAK
    only if it would clip, as render_score does."""
    peak = float(np.abs(mix).max(initial=0.0))
    if peak > 1.0:
        mix *= np.float32(render.NORMALISED_PEAK / peak)
    return np.repeat(mix[:, None], 2, axis=1)
