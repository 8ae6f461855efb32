"""Training data for transcription (Onsets and Frames): an instrument's
performances (see `mtools.training.render_sources`: ASAP piano
performances, Groove MIDI drums) rendered with its soundfonts at its
front end's rate, cut into SEGMENT_S segments, augmented (train only), and
cached as log-mel frames with frame labels.

Layout of cache_dir()/data/<instrument>_renders-<FORMAT_VERSION>/, per part:
`{part}-mel.npy` (frames, 229) float16; `{part}-onset/frame/offset.npy`
(frames, 88) uint8 0/1; `{part}-velocity.npy` (frames, 88) uint8 MIDI
velocity on onset frames; `{part}-segments.npy` (n, 2) int64 [start, end)
rows; plus manifest.json. A segment's first frame is its performance's
frame k·SEGMENT_S/frame_s; its mel comes from its own (augmented) audio
and the half window of audio either side of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import numpy as np

from mtools.errors import (InputMissingError, MtoolsError, RuntimeUnavailableError,
                           UsageError)
from mtools.io import render
from mtools.io.midi import midi_to_score
from mtools.models.transcription import LOG_FLOOR, note_labels
from mtools.score import Score
from mtools.training import corpora, hydrogen_render, salamander_render
from mtools.training.audio_augment import AUGMENTATION, augment
from mtools.training.render_sources import FLUIDSYNTH_SOUNDFONTS, PARTS, PIANO, \
    SOUNDFONT_PACKAGES, TIMIDITY_CONFIGS, TIMIDITY_DIR, Instrument, Source, Take

FORMAT_VERSION = 3  # change whenever rendering, augmentation or layout changes
SEGMENT_S = 20.0
VALID_SEED = 0  # the validation order and takes never depend on the build's seed
LABELS = ("onset", "frame", "offset", "velocity")
SILENT_MEL = float(np.log(LOG_FLOOR))  # the log-mel of silence: crops are padded with it

Progress = Callable[[int, int, str], None]


# --- locations -------------------------------------------------------------------


def renders_dir(instrument: Instrument = PIANO) -> Path:
    """The instrument's cache folder of the current format."""
    return corpora.cache_dir() / "data" / f"{instrument.name}_renders-{FORMAT_VERSION}"


def soundfont_path(name: str) -> Path:
    """A system soundfont (or TiMidity++ config) by file name, or a
    Hydrogen kit's drumkit.xml by "hydrogen:<kit>", or the Salamander
    piano's samples folder by its NAME (fetched on first use). Raises
    RuntimeUnavailableError naming the Debian package that installs it."""
    if name == salamander_render.NAME:
        return salamander_render.fetch()
    if name.startswith(hydrogen_render.PREFIX):
        path = hydrogen_render.kit_folder(name) / "drumkit.xml"
        if not path.is_file():
            raise RuntimeUnavailableError(f"Hydrogen kit {path.parent} not found",
                                          hint=f"apt-get install {hydrogen_render.PACKAGE}")
        return path
    folders = (TIMIDITY_DIR,) if name in TIMIDITY_CONFIGS else render.SYSTEM_SOUNDFONT_DIRS
    package = SOUNDFONT_PACKAGES.get(name, "a package providing it")
    if name in TIMIDITY_CONFIGS and shutil.which("timidity") is None:
        raise RuntimeUnavailableError(f"{name} is played by TiMidity++, which is not installed",
                                      hint=f"apt-get install {package}")
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise RuntimeUnavailableError(
        f"soundfont {name} not found in " + ", ".join(map(str, folders)),
        hint=f"apt-get install {package}")


def performances(part: str, instrument: Instrument = PIANO) -> list[Source]:
    """(piece, performance MIDI path) of an instrument's part, sorted."""
    return instrument.sources(part)


# --- building ----------------------------------------------------------------------


def build_renders(instrument: Instrument = PIANO, *, hours_train: float, hours_valid: float,
                  seed: int = 0,
                  progress: Progress | None = None, refresh: bool = False,
                  sources: Mapping[str, Sequence[Source]] | None = None) -> Path:
    """Render, augment and cache the data set (layout in the module
    docstring); returns its folder. Each part takes performances in a
    shuffled order fixed by `seed` (valid: by VALID_SEED) until its hours
    are reached. A complete cache built with the same arguments is reused
    unless `refresh`. `sources` replaces ASAP: {part: [(piece, path or
    Score), ...]}. `progress(done_s, total_s, what)` reports seconds kept."""
    if min(hours_train, hours_valid) < 0:
        raise UsageError("hours_train and hours_valid must not be negative")
    if sources is None:
        sources = {part: performances(part, instrument) for part in PARTS}
    recipe = _recipe(instrument, {"train": hours_train, "valid": hours_valid}, seed, sources)
    final = renders_dir(instrument)
    if not refresh and _manifest_matches(final, recipe):
        return final
    for name in set(instrument.train_soundfonts) | {instrument.valid_soundfont}:
        soundfont_path(name)  # fail before any work
    _remove_stale_partials(final)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        started, parts, done_s = time.monotonic(), {}, 0.0
        for part in PARTS:
            hours = hours_train if part == "train" else hours_valid
            report = None if progress is None else _part_progress(
                progress, done_s, 3600.0 * (hours_train + hours_valid))
            parts[part] = _build_part(instrument, partial, part, sources.get(part, ()),
                                      3600.0 * hours, seed, report)
            done_s += parts[part]["seconds"]
        manifest = {**recipe, "segment_s": SEGMENT_S, "parts": parts,
                    "front_end": instrument.front_end.to_card(),
                    "keys": instrument.keys.to_card(),
                    "build_seconds": round(time.monotonic() - started, 1),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _recipe(instrument: Instrument, hours: dict, seed: int,
            sources: Mapping[str, Sequence[Source]]) -> dict:
    """What decides the content of a build: compared to reuse a cache."""
    digest, scores = hashlib.sha1(), False
    for part in PARTS:
        for source in sources.get(part, ()):
            scores |= isinstance(source[1], Score)
            content = repr(source[1]) if isinstance(source[1], Score) else ""
            digest.update(f"{part}\t{_source_name(source)}\t{content}\n".encode())
    return {"format": FORMAT_VERSION, "instrument": instrument.name,
            "arguments": {"hours_train": hours["train"], "hours_valid": hours["valid"],
                          "seed": seed, "sources": "scores" if scores else instrument.corpus,
                          "sources_sha1": digest.hexdigest()},
            "soundfonts": {"train": list(instrument.train_soundfonts),
                           "valid": [instrument.valid_soundfont]},
            "programs": {"train": list(instrument.programs), "valid": [instrument.valid_program]},
            "augmentation": {"train": asdict(AUGMENTATION), "valid": "none"},
            **_hydrogen_recipe((*instrument.train_soundfonts, instrument.valid_soundfont))}


def _hydrogen_recipe(soundfonts: Sequence[str]) -> dict:
    """The key maps and renderer version of the Hydrogen kits among
    `soundfonts` (nothing without one), so a change to either rebuilds."""
    kits = [name.removeprefix(hydrogen_render.PREFIX) for name in soundfonts
            if name.startswith(hydrogen_render.PREFIX)]
    if not kits:
        return {}
    return {"hydrogen": {"renderer": hydrogen_render.RENDERER_VERSION,
                         "keys": {kit: hydrogen_render.KIT_KEYS.get(kit) for kit in kits}}}


def _manifest_matches(folder: Path, recipe: dict) -> bool:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    stored = {key: manifest.get(key) for key in recipe}
    return json.loads(json.dumps(recipe)) == stored and all(
        (folder / f"{part}-{name}.npy").is_file() for part in PARTS
        for name in ("mel", "segments", *LABELS))


def _remove_stale_partials(final: Path) -> None:
    """Partial folders left by builds that were killed (their process is gone)."""
    for folder in final.parent.glob(f".{final.name}.partial-*"):
        try:
            os.kill(int(folder.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def _build_part(instrument: Instrument, folder: Path, part: str, sources: Sequence[Source],
                target_s: float, seed: int, report: Callable[[float, str], None] | None) -> dict:
    """Render `part` into `folder` until `target_s` seconds are kept; its
    manifest entry. Files that cannot be read are skipped and listed."""
    part_seed = seed if part == "train" else VALID_SEED
    writer, kept_s, takes, skipped = _PartWriter(instrument, folder, part), 0.0, [], []
    try:
        for index, (piece, source) in _shuffled(sources, part_seed):
            if kept_s >= target_s:
                break
            name, first = _source_name((piece, source)), len(writer.bounds)
            try:
                score = _load(source)
            except (MtoolsError, ValueError, OSError) as exc:
                skipped.append(f"{name}: {exc}")
                continue
            take = choose_take(instrument, part, part_seed, index)
            seconds = _render_into(instrument, writer, score, take, target_s - kept_s,
                                   (part_seed, index) if part == "train" else None)
            kept_s += seconds
            takes.append({"piece": piece, "performance": name, **asdict(take),
                          "segments": [first, len(writer.bounds) - first]})
            if report is not None:
                report(kept_s, f"{part} {name}")
    finally:
        writer.close()
    return {"soundfonts": list(instrument.train_soundfonts if part == "train"
                               else [instrument.valid_soundfont]),
            "pieces": len({t["piece"] for t in takes}), "performances": len(takes),
            "segments": len(writer.bounds), "seconds": round(kept_s, 3),
            "hours": round(kept_s / 3600.0, 4), "skipped": skipped, "takes": takes}


def _part_progress(progress: Progress, done_s: float, total_s: float):
    """(seconds kept in this part, what) -> progress(done_s + those, total_s, what)."""
    return lambda kept_s, what: progress(round(done_s + kept_s), round(total_s), what)


def _shuffled(sources: Sequence[Source], seed: int) -> list[tuple[int, Source]]:
    """(index in name order, source) in the order fixed by `seed`."""
    ordered = sorted(sources, key=lambda s: (s[0], _source_name(s)))
    return [(int(i), ordered[i]) for i in np.random.default_rng(seed).permutation(len(ordered))]


def choose_take(instrument: Instrument, part: str, seed: int, index: int) -> Take:
    """The soundfont, program and detuning of performance `index` (in the
    sorted source list) of a part: random for "train", fixed for "valid"."""
    if part != "train":
        return Take(instrument.valid_soundfont, instrument.valid_program)
    rng = np.random.default_rng([seed, index, 1])
    soundfont = instrument.train_soundfonts[int(rng.integers(len(instrument.train_soundfonts)))]
    program = instrument.programs[int(rng.integers(len(instrument.programs)))]
    detune = 0.0
    if rng.random() < AUGMENTATION.detune_p and instrument.detune:
        detune = round(float(rng.uniform(-1.0, 1.0)) * AUGMENTATION.detune_cents, 2)
    return Take(soundfont, program, detune)


def _source_name(source: Source) -> str:
    """"<piece>/<file name>" for a MIDI file (ASAP keeps each performance in
    its piece's folder), the piece for a Score."""
    piece, performance = source
    return f"{piece}/{performance.name}" if isinstance(performance, Path) else piece


def _load(source: Union[Path, Score]) -> Score:
    return source if isinstance(source, Score) else midi_to_score(source.read_bytes())


def render_take(instrument: Instrument, score: Score, take: Take) -> np.ndarray:
    """(samples,) float32 mono audio of the prepared score at the front
    end's rate (the channels of render_score averaged)."""
    play = render.render_score
    if take.soundfont in FLUIDSYNTH_SOUNDFONTS:
        from mtools.training.fluid_render import render_fluidsynth as play
    elif take.soundfont in TIMIDITY_CONFIGS:
        from mtools.training.timidity_render import render_timidity as play
    elif take.soundfont.startswith(hydrogen_render.PREFIX):
        play = hydrogen_render.render_hydrogen
    elif take.soundfont == salamander_render.NAME:
        play = salamander_render.render_salamander
    audio = play(score, sample_rate_hz=instrument.front_end.sample_rate_hz,
                 soundfont=soundfont_path(take.soundfont))
    return 0.5 * (audio[:, 0] + audio[:, 1])


def _render_into(instrument: Instrument, writer: _PartWriter, score: Score, take: Take,
                 budget_s: float,
                 seed_key: tuple[int, int] | None) -> float:
    """Render one performance, cut it into segments and append them until
    `budget_s` is used; the seconds kept. With `seed_key` (seed, index),
    segment k is augmented with a generator seeded by (seed, index, 2, k)."""
    front_end, keys = instrument.front_end, instrument.keys
    score = instrument.prepare(score, take)
    audio = render_take(instrument, score, take)
    labels = note_labels(score, front_end.frames_for(len(audio)), front_end, keys)
    labels["velocity"] = np.rint(labels["velocity"] * 127.0).astype(np.uint8)
    seg_rows = round(SEGMENT_S / front_end.frame_s)
    seg_samples = seg_rows * front_end.hop_samples
    half = front_end.fft_samples // 2
    # Centred frames: the audio padded as log_mel pads it, plus room for whole clips.
    padded = np.concatenate([np.zeros(half, np.float32), audio,
                             np.zeros(half + seg_samples, np.float32)])
    context = round(AUGMENTATION.rt60_s[1] * front_end.sample_rate_hz)
    kept_s = 0.0
    for k, (start, end) in enumerate(segment_rows(labels["frame"], seg_rows)):
        if kept_s >= budget_s:
            break
        # The clip holds half a window either side, so the segment's edge
        # frames see the real audio around it, as streaming inference does.
        first = start * front_end.hop_samples  # in `padded`, the clip's left padding
        clip = padded[first:first + seg_samples + 2 * half]
        if seed_key is not None:
            clip = augment(clip, np.random.default_rng([*seed_key, 2, k]), AUGMENTATION,
                           context=padded[max(0, first - context):first])
        mel = front_end.frames_mel(clip, end - start)
        writer.append(mel, {name: labels[name][start:end] for name in LABELS})
        kept_s += (end - start) * front_end.frame_s
    return kept_s


def segment_rows(frame_labels: np.ndarray, seg_rows: int) -> list[tuple[int, int]]:
    """[start, end) frame rows of the segments of a performance with
    `frame_labels` (frames, keys): consecutive `seg_rows` pieces (the last
    may be shorter), leaving out trailing ones where no key sounds."""
    active = np.nonzero(frame_labels.any(axis=1))[0]
    stop = int(active[-1]) + 1 if len(active) else 0
    frames = len(frame_labels)
    return [(start, min(start + seg_rows, frames)) for start in range(0, stop, seg_rows)]


# --- storage -------------------------------------------------------------------------


class _NpyWriter:
    """Rows appended to a .npy file whose length is known only at close:
    numpy's header leaves room for the first axis to grow, so it is
    rewritten in place with the final shape."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...]):
        self.dtype, self.row_shape, self.rows = np.dtype(dtype), row_shape, 0
        self.file = open(path, "wb")
        self._header()
        self.data_offset = self.file.tell()

    def _header(self) -> None:
        np.lib.format.write_array_header_1_0(self.file, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (self.rows, *self.row_shape)})

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        self.file.write(rows.tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self.file.seek(0)
        self._header()
        if self.file.tell() != self.data_offset:  # numpy changed its header padding
            raise RuntimeError("the .npy header grew while the data was written")
        self.file.close()


class _PartWriter:
    """The .npy files of one part, filled one segment at a time."""

    def __init__(self, instrument: Instrument, folder: Path, part: str):
        keys, bins = instrument.keys.keys, instrument.front_end.mel_bins
        self.mel = _NpyWriter(folder / f"{part}-mel.npy", np.float16, (bins,))
        self.labels = {name: _NpyWriter(folder / f"{part}-{name}.npy", np.uint8, (keys,))
                       for name in LABELS}
        self.bounds: list[tuple[int, int]] = []
        self.segments_path = folder / f"{part}-segments.npy"

    def append(self, mel: np.ndarray, labels: dict[str, np.ndarray]) -> None:
        start = self.mel.rows
        self.mel.append(mel)
        for name, writer in self.labels.items():
            writer.append(labels[name])
        self.bounds.append((start, self.mel.rows))

    def close(self) -> None:
        for writer in (self.mel, *self.labels.values()):
            writer.close()
        np.save(self.segments_path, np.asarray(self.bounds, np.int64).reshape(-1, 2))


# --- loading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderSet:
    """One part of the cache, memory-mapped. mel (frames, 229) float16;
    onset, frame, offset (frames, 88) uint8 0/1; velocity (frames, 88) uint8
    MIDI velocity on onset frames; segments (n, 2) int64 [start, end) rows."""

    mel: np.ndarray
    onset: np.ndarray
    frame: np.ndarray
    offset: np.ndarray
    velocity: np.ndarray
    segments: np.ndarray

    def crop(self, rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
        """A random `frames`-long window inside one random segment: mel
        (frames, 229) float32; onset, frame, offset, velocity (frames, 88)
        float32, velocity in [0, 1]. A shorter segment is padded at the end
        with silence (mel SILENT_MEL, labels 0)."""
        if not len(self.segments):
            raise UsageError("this render set holds no segments")
        start, end = (int(v) for v in self.segments[rng.integers(len(self.segments))])
        first = start + int(rng.integers(max(0, end - start - frames) + 1))
        last = min(end, first + frames)
        mel = np.full((frames, self.mel.shape[1]), SILENT_MEL, np.float32)
        mel[:last - first] = self.mel[first:last]
        out = {"mel": mel}
        for name in LABELS:
            values = np.zeros((frames, self.onset.shape[1]), np.float32)
            values[:last - first] = getattr(self, name)[first:last]
            out[name] = values / 127.0 if name == "velocity" else values
        return out

    def batch(self, rng: np.random.Generator, batch_size: int,
              frames: int) -> dict[str, np.ndarray]:
        """`batch_size` crops stacked: mel (batch, frames, 229), the labels
        (batch, frames, 88), all float32."""
        crops = [self.crop(rng, frames) for _ in range(batch_size)]
        return {name: np.stack([c[name] for c in crops]) for name in crops[0]}


def load_renders(part: str, instrument: Instrument = PIANO) -> RenderSet:
    """The cached part ("train" or "valid") of the last build, memory-mapped."""
    if part not in PARTS:
        raise UsageError(f"unknown part {part!r}", hint="use 'train' or 'valid'")
    folder = renders_dir(instrument)
    if not (folder / "manifest.json").is_file():
        raise InputMissingError(f"no {instrument.name} renders at {folder}",
                                hint="build them first with build_renders()")
    arrays = {name: np.load(folder / f"{part}-{name}.npy", mmap_mode="r")
              for name in ("mel", *LABELS)}
    return RenderSet(**arrays, segments=np.load(folder / f"{part}-segments.npy"))


def valid_pieces(n: int, instrument: Instrument = PIANO, *,
                 sources: Sequence[Source] | None = None, selection: bool = False,
                 soundfont: str | None = None, valid_part: Mapping | None = None
                 ) -> list[tuple[str, Score, np.ndarray]]:
    """`n` validation performances for note-level evaluation, rendered now,
    clean, with the validation soundfont: (name, Score as rendered,
    (samples,) float32 mono audio at the front end's rate). They come from
    the far end of the valid order, and none is of a piece the valid part
    holds (that part's loss selects the checkpoint and its performances
    choose the decoding thresholds, so these stay unseen by training and by
    every choice). The valid part is `valid_part` (a manifest's
    parts["valid"]: a model card's, see card_valid_part), else the cached
    renders'. `selection` takes instead the performances that part holds,
    for choices made on validation data. `sources` replaces ASAP's valid
    performances. `soundfont` renders them with another of the
    instrument's held-out soundfonts."""
    names, pieces_seen = _valid_part_takes(instrument, valid_part)
    if selection and not names:
        if valid_part is not None:
            raise InputMissingError(f"the model's card names no {instrument.name} validation "
                                    "performances to choose on")
        raise InputMissingError(f"no cached {instrument.name} validation renders to choose on",
                                hint="build them first (mtools train " + instrument.model + ")")
    order = _shuffled(performances("valid", instrument) if sources is None else sources,
                      VALID_SEED)[::-1]
    pieces = []
    for index, source in order:
        if len(pieces) == n:
            break
        if (_source_name(source) in names) if selection else (source[0] not in pieces_seen):
            take = choose_take(instrument, "valid", VALID_SEED, index)
            take = take if soundfont is None else replace(take, soundfont=soundfont)
            score = instrument.prepare(_load(source[1]), take)
            pieces.append((_source_name(source), score, render_take(instrument, score, take)))
    return pieces


def cached_manifest(instrument: Instrument = PIANO) -> dict | None:
    """The cached renders' manifest.json; None without a readable one."""
    try:
        return json.loads((renders_dir(instrument) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def cached_hours(instrument: Instrument = PIANO) -> tuple[float, float] | None:
    """(training, validation) hours the cached renders were built for; None
    without a cache."""
    try:
        arguments = cached_manifest(instrument)["arguments"]
        return float(arguments["hours_train"]), float(arguments["hours_valid"])
    except (KeyError, TypeError, ValueError):  # no manifest, or a field missing or null
        return None


def card_valid_part(card) -> dict | None:
    """The valid part of the renders a transcription model trained and
    chose on, as its card records them (training.renders.parts.valid);
    None where the card has no such record."""
    part = card.training
    for key in ("renders", "parts", "valid"):
        part = part.get(key) if isinstance(part, dict) else None
    return part if isinstance(part, dict) and isinstance(part.get("takes"), list) else None


def _valid_part_takes(instrument: Instrument, valid_part: Mapping | None = None
                      ) -> tuple[set[str], set[str]]:
    """(performances, pieces) of `valid_part`, else of the cached valid
    part; empty without either."""
    if valid_part is None:
        manifest = cached_manifest(instrument)
        if manifest is None:
            return set(), set()
        valid_part = manifest["parts"]["valid"]
    takes = valid_part["takes"]
    return {take["performance"] for take in takes}, {take["piece"] for take in takes}
