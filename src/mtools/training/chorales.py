"""Four-voice chorales for Coconet: the JSB chorales and JS Fakes in
Coconet's npz format, or MIDI/JSONL files with four parts. Numpy only (used
by `mtools eval` without torch).

Sources: "jsb" (../shared/data/jsb_chorales, Boulanger-Lewandowski's train
and valid parts; the test part is not here), "js_fakes" (all train), a
Coconet-style .npz (arrays of (steps, 4) pitches, NaN = rest, under keys
train/valid/test), or a MIDI/JSONL file or folder (every piece counts as
"valid" unless the split is "all").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtools.errors import InputFormatError, InputMissingError, UsageError
from mtools.models.coconet import REST
from mtools.training.corpora import data_root

JSB_FILE = "jsb_chorales/Jsb16thSeparated.train_valid.npz"
FAKES_FILE = "js_fakes/js-fakes-16thSeparated.npz"
PARTS = ("train", "valid", "test", "all")


def load_chorales(source: str, part: str) -> list[np.ndarray]:
    """The chorales of `part` ("train", "valid", "test", "all") in a source,
    each an int16 array (steps, 4) of pitches, REST for a rest; pitches
    outside Coconet's range are moved into it by octaves."""
    from mtools.models.coconet import ChoraleSpace
    from mtools.models.harmonization import fold

    space = ChoraleSpace()
    return [fold(c, space.min_pitch, space.max_pitch) for c in _load(source, part)]


def _load(source: str, part: str) -> list[np.ndarray]:
    if part not in PARTS:
        raise UsageError(f"unknown split part {part!r}", hint="use 'train' or 'valid'")
    if source == "jsb":
        return _npz_part(data_root() / JSB_FILE, part)
    if source == "js_fakes":
        arrays = _read_npz(data_root() / FAKES_FILE)
        return [_as_chorale(a) for a in arrays["pitches"]] if part in ("train", "all") else []
    path = Path(source)
    if not path.exists():
        raise InputMissingError(f"no chorale source {source}",
                                hint="use jsb, js_fakes, an .npz, or a MIDI file or folder")
    if path.suffix == ".npz":
        return _npz_part(path, part)
    return [] if part == "train" else _score_chorales(path)


def _read_npz(path: Path):
    if not path.exists():
        raise InputMissingError(f"{path} not found", hint="set MTOOLS_DATA to the shared data folder")
    return np.load(path, allow_pickle=True, encoding="latin1")


def _npz_part(path: Path, part: str) -> list[np.ndarray]:
    arrays = _read_npz(path)
    names = [n for n in ("train", "valid", "test") if n in arrays.files] if part == "all" \
        else [part] if part in arrays.files else []
    return [_as_chorale(a) for name in names for a in arrays[name]]


def _as_chorale(pitches) -> np.ndarray:
    pitches = np.asarray(pitches, dtype=np.float64)
    if pitches.ndim != 2:
        raise InputFormatError(f"a chorale must be (steps, voices) pitches, got shape {pitches.shape}")
    return np.where(np.isnan(pitches), REST, pitches).astype(np.int16)


def _score_chorales(path: Path) -> list[np.ndarray]:
    from mtools.io.formats import detect_format, read_scores
    from mtools.models.harmonization import chorale_from_score

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".jsonl")) \
        if path.is_dir() else [path]
    chorales = []
    for file in files:
        data = file.read_bytes()
        for score in read_scores(data, detect_format(data, None, str(file)), str(file)):
            chorale = chorale_from_score(score)
            if chorale is not None:
                chorales.append(chorale)
    return chorales
