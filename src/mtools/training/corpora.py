"""Training corpora for the event models, parsed once and cached as numpy.

Sources (the `source` argument of the loaders):

- "music21:folk": folk tunes of music21's corpus (Essen, O'Neill's 1850,
  Ryan's Mammoth, its Nottingham sample), repeats played out as ABC means
  them (see _expanded). Never the Bach
  chorales: they hold the JSB test pieces.
- "nottingham": the Nottingham tunes at <data>/nottingham/MIDI (a melody
  track over a block-chord track; chords are read from the chord notes).
- "groove": Groove MIDI at <data>/groove_midi, split by its info.csv.
- a path: a folder of MIDI/JSONL/ABC/MusicXML files (searched recursively)
  or one such file.

<data> is $MTOOLS_DATA, else ../shared/data beside the repository. Caches
live in cache_dir()/data as `<kind>-<source>.npz` with a JSON manifest
(format version, fingerprint of the input files, counts, statistics); a
cache is parsed again when either changes, or with `refresh=True`; where
the source's files are missing (a machine given only the caches), an
existing cache is used as it is. Parsing
runs in `workers` processes and reports `progress(done, total, what)`.

Every piece gets one part, "train" or "valid", before any windowing or
augmentation: from a hash of its identifier (VALID_PERCENT of pieces are
"valid"), or from the data set's own split where it has one (Groove).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from importlib.util import find_spec
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np

from mtools.errors import InputMissingError, MtoolsError, UsageError
from mtools.io.notation import DEFAULT_VELOCITY
from mtools.models.chords import LeadSheet, score_to_lead_sheets, top_instrument
from mtools.models.events import (DRUM_CLASS_NAMES, DrumTrack, MelodyLine,
                                  score_to_drum_tracks, score_to_melodies)
from mtools.score import ChordSymbol, Note, Score, Tempo, TimeSignature, make_score

CACHE_FORMAT = "mtools-corpus-2"  # change whenever extraction or layout changes
VALID_PERCENT = 10
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "nottingham-dataset")
DEFAULT_WORKERS = 2
_SCORE_SUFFIXES = (".mid", ".midi", ".kar", ".jsonl", ".json", ".abc", ".xml", ".musicxml",
                   ".mxl")
_GROOVE_PARTS = {"train": "train", "validation": "valid", "test": "test"}
_NAMED_SOURCES = {"music21:folk": "music21-folk", "nottingham": "nottingham", "groove": "groove"}

Progress = Callable[[int, int, str], None]


class Job(NamedTuple):
    """One file to parse: its path, the piece identifier (prefix for files
    holding several pieces), the part fixed by the data set ("" = hash),
    and how to find its melody ("all" instruments or the "top" one)."""

    path: str
    piece: str
    part: str = ""
    melody: str = "all"


# --- locations -------------------------------------------------------------------


def cache_dir() -> Path:
    """$MTOOLS_CACHE, else ~/.cache/mtools."""
    return Path(os.environ.get("MTOOLS_CACHE") or Path.home() / ".cache" / "mtools")


def data_root() -> Path:
    """The shared training data: $MTOOLS_DATA, else ../shared/data beside the
    repository. Raises InputMissingError when the folder is absent."""
    env = os.environ.get("MTOOLS_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    if not root.is_dir():
        raise InputMissingError(f"training data folder {root} not found",
                                hint="set MTOOLS_DATA to the folder holding nottingham/ "
                                     "and groove_midi/")
    return root


# --- the split -------------------------------------------------------------------


def piece_part(piece: str) -> str:
    """"valid" for VALID_PERCENT % of piece identifiers (a fixed hash), else
    "train"."""
    bucket = int(hashlib.sha1(piece.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "valid" if bucket < VALID_PERCENT else "train"


def item_part(item) -> str:
    """The part of an item (MelodyLine, DrumTrack, LeadSheet) or piece id."""
    if isinstance(item, str):
        return piece_part(item)
    return item.part or piece_part(item.piece)


def split(items: Iterable, part: str = "train") -> list:
    """The items of one part, "train" or "valid" (Groove's "test" too)."""
    if part not in ("train", "valid", "test"):
        raise UsageError(f"unknown split part {part!r}", hint="use 'train' or 'valid'")
    return [item for item in items if item_part(item) == part]


# --- loading -----------------------------------------------------------------------


def load_melodies(source: str, *, progress: Progress | None = None, refresh: bool = False,
                  workers: int = DEFAULT_WORKERS) -> list[MelodyLine]:
    """Melodies of a source (see the module docstring), Magenta's melody
    pipeline settings (7 bars at least, 5 pitch classes, 1-bar gaps)."""
    return _load("melodies", source, progress, refresh, workers)


def load_drum_tracks(source: str, *, progress: Progress | None = None, refresh: bool = False,
                     workers: int = DEFAULT_WORKERS) -> list[DrumTrack]:
    """Drum tracks of a source (7 bars at least, 1-bar gaps)."""
    return _load("drums", source, progress, refresh, workers)


def load_grooves(source: str, *, progress: Progress | None = None, refresh: bool = False,
                 workers: int = DEFAULT_WORKERS) -> list[DrumTrack]:
    """Drum tracks with their microtiming (DrumTrack.offsets) for GrooVAE:
    2 bars at least, 1-bar gaps, each running to the end of its last bar."""
    return _load("grooves", source, progress, refresh, workers)


def load_lead_sheets(source: str, *, progress: Progress | None = None, refresh: bool = False,
                     workers: int = DEFAULT_WORKERS) -> list[LeadSheet]:
    """Lead sheets (melody + chord per step) of a source: chords from chord
    symbols, else read from the accompaniment notes step by step."""
    return _load("lead_sheets", source, progress, refresh, workers)


def cache_paths(kind: str, source: str) -> tuple[Path, Path]:
    """(npz, manifest) paths of a cached corpus."""
    slug = _NAMED_SOURCES.get(source)
    if slug is None:
        slug = "path-" + hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:12]
    base = cache_dir() / "data" / f"{kind}-{slug}"
    return base.with_suffix(".npz"), base.with_suffix(".json")


def read_manifest(kind: str, source: str) -> dict | None:
    """The manifest of a cached corpus, None when there is none."""
    try:
        return json.loads(cache_paths(kind, source)[1].read_text())
    except (OSError, ValueError):
        return None


_UNREADABLE: dict[tuple[str, str], list[str]] = {}  # (kind, source) → "file: reason", as loaded


_REPORTERS: list[Callable[[str], None]] = []


def report_unreadable(report: Callable[[str], None] | None) -> None:
    """Have `report("file: reason")` called for each unreadable file of a
    folder or file source as it is loaded (parsed or read from its cache);
    it replaces the one set before (None: none)."""
    _REPORTERS[:] = [report] if report is not None else []


def _record_unreadable(kind: str, source: str, found: list[str]) -> None:
    before = set(unreadable_files(source))
    _UNREADABLE[kind, source] = found
    if source not in _NAMED_SOURCES:
        for why in unreadable_files(source):
            if why not in before:
                for report in _REPORTERS:
                    report(why)


def is_named_source(source: str) -> bool:
    """Whether `source` names one of the data sets (not a path)."""
    return source in _NAMED_SOURCES


def unreadable_files(source: str) -> list[str]:
    """"file: reason" for each file of `source` that could not be read, as
    the loads of it in this process found (from its cache's manifest or
    the parse); a folder's files named with the folder."""
    prefix = source.rstrip("/") + "/" if Path(source).is_dir() else ""
    return sorted({prefix + why for (_, loaded), found in _UNREADABLE.items()
                   if loaded == source for why in found})


def _load(kind: str, source: str, progress, refresh: bool, workers: int) -> list:
    npz, manifest_path = cache_paths(kind, source)
    manifest = read_manifest(kind, source)
    try:
        jobs, fingerprint = _jobs(source)
    except InputMissingError:
        # The source is not on this machine (a GPU machine given only the
        # caches, say): its cache stands in for it when there is one.
        if refresh or not manifest or manifest.get("format") != CACHE_FORMAT or not npz.is_file():
            raise
        _record_unreadable(kind, source, manifest.get("unreadable", []))
        with np.load(npz, allow_pickle=False) as arrays:
            return _unpack(kind, arrays)
    if (not refresh and manifest and manifest.get("format") == CACHE_FORMAT
            and manifest.get("fingerprint") == fingerprint and npz.is_file()
            and ("unreadable" in manifest or source in _NAMED_SOURCES)):
        # (a folder's cache from before the unreadable files were recorded is made again)
        _record_unreadable(kind, source, manifest.get("unreadable", []))
        with np.load(npz, allow_pickle=False) as arrays:
            return _unpack(kind, arrays)
    started = time.monotonic()
    items, skipped, unreadable = _parse_all(kind, jobs, progress, workers)
    _record_unreadable(kind, source, unreadable)
    seconds = time.monotonic() - started
    from mtools.io.streams import atomic_write
    buffer = io.BytesIO()
    np.savez(buffer, **_pack(kind, items))
    atomic_write(npz, buffer.getvalue())
    manifest = {"format": CACHE_FORMAT, "kind": kind, "source": source,
                "fingerprint": fingerprint, "files": len(jobs), "parse_seconds": round(seconds, 1),
                "workers": workers, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "skipped": len(skipped), "skipped_examples": skipped[:20],
                "unreadable": unreadable,
                "stats": corpus_stats(items)}
    atomic_write(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
    return items


# --- sources ---------------------------------------------------------------------


def _jobs(source: str) -> tuple[list[Job], str]:
    """The files of a source and a fingerprint of them (names and sizes)."""
    if source == "music21:folk":
        jobs = _folk_jobs()
    elif source == "nottingham":
        folder = data_root() / "nottingham" / "MIDI"
        jobs = [Job(str(p), f"nottingham/{p.stem}", melody="top")
                for p in sorted(folder.glob("*.mid"))]
    elif source == "groove":
        jobs = _groove_jobs(data_root() / "groove_midi")
    elif ":" in source and not Path(source).exists():
        raise UsageError(f"unknown corpus {source!r}",
                         hint="use music21:folk, nottingham, groove or a path")
    else:
        jobs = _path_jobs(Path(source))
    if not jobs:
        raise InputMissingError(f"corpus {source!r} holds no readable files")
    return jobs, _fingerprint(jobs, with_times=source not in _NAMED_SOURCES)


def _fingerprint(jobs: list[Job], with_times: bool) -> str:
    """A hash of the files' names and sizes (and modification times: not
    for the named sources, whose files only change with a new release)."""
    lines = []
    for job in jobs:
        stat = os.stat(job.path)
        stamp = stat.st_mtime_ns if with_times else ""
        lines.append(f"{job.piece} {job.part} {stat.st_size} {stamp}")
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def _folk_jobs() -> list[Job]:
    spec = find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise InputMissingError("music21 is not installed", hint="pip install music21")
    corpus = Path(list(spec.submodule_search_locations)[0]) / "corpus"
    jobs = []
    for collection in FOLK_COLLECTIONS:
        for path in sorted((corpus / collection).glob("*.abc")):
            if not path.name.startswith("test"):  # music21's own parser fixtures
                jobs.append(Job(str(path), f"music21/{collection}/{path.name}"))
    # The biggest books first, so the workers finish together.
    return sorted(jobs, key=lambda j: -os.path.getsize(j.path))


def _groove_jobs(folder: Path) -> list[Job]:
    if not (folder / "info.csv").is_file():
        raise InputMissingError(f"{folder / 'info.csv'} not found",
                                hint="set MTOOLS_DATA to the folder holding groove_midi/")
    with open(folder / "info.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [Job(str(folder / row["midi_filename"]), f"groove/{row['id']}",
                _GROOVE_PARTS.get(row["split"], row["split"])) for row in rows]


def _path_jobs(path: Path) -> list[Job]:
    if not path.exists():
        raise InputMissingError(f"{path}: no such file or folder")
    if path.is_file():
        return [Job(str(path), path.name)]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _SCORE_SUFFIXES
                   and p.is_file())
    return [Job(str(p), p.relative_to(path).as_posix()) for p in files]


# --- parsing -----------------------------------------------------------------------


def _parse_all(kind: str, jobs: list[Job], progress, workers: int):
    """Items of every job, in job order, "piece: reason" for what was
    skipped, and "file: reason" for the files that could not be read."""
    report = progress or (lambda done, total, what: None)
    results: dict[int, tuple] = {}
    if workers <= 1 or len(jobs) < 4:
        for index, job in enumerate(jobs):
            results[index] = _parse_job(kind, job)
            report(index + 1, len(jobs), job.piece)
    else:
        for attempt in (1, 2):  # a worker killed from outside costs one retry
            try:
                _parse_in_pool(kind, jobs, results, report, workers)
                break
            except BrokenProcessPool:
                if attempt == 2:
                    raise MtoolsError("corpus parsing failed: a worker process was killed "
                                      "twice", hint="retry with workers=1") from None
    items, skipped, unreadable = [], [], []
    for index in range(len(jobs)):
        items += results[index][0]
        skipped += results[index][1]
        unreadable += results[index][2]
    return items, skipped, unreadable


def _parse_in_pool(kind: str, jobs: list[Job], results: dict, report, workers: int) -> None:
    """Parse the jobs not yet in `results` in worker processes, filling it."""
    todo = [i for i in range(len(jobs)) if i not in results]
    with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
        futures = {pool.submit(_parse_job, kind, jobs[i]): i for i in todo}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            report(len(results), len(jobs), jobs[futures[future]].piece)


def _pool_context():
    """"spawn" (safe beside a parent's threads, e.g. torch's), unless the
    main module cannot be re-imported by a child (code run from stdin): then
    "fork"."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and not os.path.exists(main_file):
        return get_context("fork")
    return get_context("spawn")


def _parse_job(kind: str, job: Job) -> tuple[list, list[str], list[str]]:
    """Worker: the items of one file, what was skipped and why, and (the
    same) when the file itself could not be read."""
    items, skipped = [], []
    try:
        pieces = _read_pieces(job)
    except (MtoolsError, ValueError, OSError) as exc:
        why = str(exc) if str(exc).startswith(job.piece) else f"{job.piece}: {exc}"
        return [], [why], [why]
    for piece, score in pieces:
        part = job.part or piece_part(piece)
        try:
            found = _extract(kind, score, piece, job.melody)
        except (MtoolsError, ValueError) as exc:
            skipped.append(f"{piece}: {exc}")
            continue
        items += [_with_part(item, part) for item in found]
    return items, skipped, []


def _read_pieces(job: Job) -> list[tuple[str, Score]]:
    """(piece id, score) of each piece in a file."""
    path = Path(job.path)
    if job.piece.startswith("music21/"):
        return _folk_pieces(path, job.piece)
    from mtools.io.formats import detect_format, read_scores
    data = path.read_bytes()
    scores = read_scores(data, detect_format(data, None, job.piece), job.piece)
    if len(scores) == 1:
        return [(job.piece, scores[0])]
    return [(f"{job.piece}#{i + 1}", score) for i, score in enumerate(scores)]


def _extract(kind: str, score: Score, piece: str, melody: str) -> list:
    if kind == "drums":
        return score_to_drum_tracks(score, piece=piece)
    if kind == "grooves":
        return score_to_drum_tracks(score, piece=piece, min_bars=2, timing=True, pad_end=True)
    if kind == "lead_sheets":
        return score_to_lead_sheets(score, piece=piece)
    top = top_instrument(score.notes) if melody == "top" else None
    return score_to_melodies(score, piece=piece, instruments=None if top is None else (top,))


def _with_part(item, part: str):
    if isinstance(item, LeadSheet):
        return replace(item, melody=replace(item.melody, part=part))
    return replace(item, part=part)


# --- music21 folk tunes --------------------------------------------------------------


def _folk_pieces(path: Path, piece: str) -> list[tuple[str, Score]]:
    """Every tune of an ABC book in music21's corpus, repeats expanded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import music21
        parsed = music21.converter.parse(str(path), forceSource=True)
        tunes = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
        pieces = []
        for index, tune in enumerate(tunes, start=1):
            tune = _expanded(tune, music21)
            number = tune.metadata.number if tune.metadata else None
            name = (f"nottingham/reelsa-c{number}" if "nottingham-dataset" in piece and number
                    else f"{piece}#{index}")  # the id the same tune has in ../shared
            try:
                pieces.append((name, _tune_to_score(tune, music21)))
            except Exception:
                continue
        return pieces


MAX_REPEAT_EXPANSION = 3.0  # expanded length over written length, at most


def _expanded(tune, music21):
    """The tune with its repeats played out, as ABC means them: a `:|`
    with no `|:` before it repeats from the end of the last repeat or
    double bar. (music21 repeats each such mark from the tune's start, so
    n of them make 2^n copies: one O'Neill jig became ~9,300 bars.) Where
    the marks still expand to more than MAX_REPEAT_EXPANSION times the
    written length, or music21 cannot read them, the tune as written."""
    written = float(tune.highestTime)
    try:
        _open_sections(tune, music21)
        expanded = tune.expandRepeats()
    except Exception:  # music21 raises many types on odd repeat marks
        return tune
    if float(expanded.highestTime) > MAX_REPEAT_EXPANSION * written:
        return tune
    return expanded


def _open_sections(tune, music21) -> None:
    """Give each `:|` that has no `|:` since the last section boundary
    (a `:|`, a double or final bar line, or the tune's start) a `|:` at
    that boundary, in place. A section starts after the endings of the
    repeat before it (measures under a volta bracket are skipped)."""
    Repeat, Bracket = music21.bar.Repeat, music21.spanner.RepeatBracket
    for part in (tune.parts if tune.hasPartLikeStreams() else [tune]):
        measures = list(part.getElementsByClass(music21.stream.Measure))
        in_bracket = [any(isinstance(s, Bracket) for s in m.getSpannerSites()) for m in measures]
        section, opened = 0, False
        for index, measure in enumerate(measures):
            left, right = measure.leftBarline, measure.rightBarline
            if isinstance(left, Repeat) and left.direction == "start":
                section, opened = index, True
            elif left is not None and left.type in ("double", "final", "heavy-light"):
                section, opened = index, False
            if isinstance(right, Repeat) and right.direction == "end":
                if not opened and section > 0:
                    measures[section].leftBarline = Repeat(direction="start")
                section, opened = index + 1, False
                while section < len(measures) and in_bracket[section]:
                    section += 1  # the repeat's later endings
            elif right is not None and right.type in ("double", "final", "light-heavy"):
                section, opened = index + 1, False


def _tune_to_score(tune, music21) -> Score:
    """A folk tune as a Score at its first tempo. Lighter than
    io.notation's converter (whose stripTies deep-copies every part, 30x
    slower over 12,000 tunes); ties join only notes of the same pitch."""
    flat = tune.flatten()
    marks = flat.getElementsByClass(music21.tempo.MetronomeMark)
    qpm = float(marks[0].getQuarterBPM() or 120.0) if marks else 120.0
    seconds = 60.0 / qpm
    parts = list(tune.parts) if tune.hasPartLikeStreams() else [tune]
    notes = []
    for index, part in enumerate(parts):
        part_flat = flat if len(parts) == 1 else part.flatten()
        for pitch, start, end in _tied_notes(part_flat, music21):
            notes.append(Note(pitch, DEFAULT_VELOCITY, start * seconds, end * seconds, 0, index))
    meters = [TimeSignature(float(ts.offset) * seconds, ts.numerator, ts.denominator)
              for ts in flat.getElementsByClass(music21.meter.TimeSignature)]
    chords = [ChordSymbol(float(c.offset) * seconds, c.figure)
              for c in flat.getElementsByClass(music21.harmony.ChordSymbol)]
    title = tune.metadata.title if tune.metadata and tune.metadata.title else ""
    return make_score(notes, tempos=[Tempo(0.0, qpm)], time_signatures=meters[:1] + [
        m for a, m in zip(meters, meters[1:]) if (a.numerator, a.denominator)
        != (m.numerator, m.denominator)], chords=chords, title=title)


def _tied_notes(flat, music21) -> list[tuple[int, float, float]]:
    """(pitch, start, end) in quarter notes of a flat part, tied notes joined."""
    out, pending = [], {}
    for element in flat.notes:
        duration = float(element.quarterLength)
        if isinstance(element, music21.harmony.ChordSymbol) or duration <= 0:
            continue  # chord symbols and grace notes
        start, tie = float(element.offset), element.tie.type if element.tie else None
        for pitch in {p.midi for p in element.pitches}:
            held = pending.get(pitch)
            if tie in ("stop", "continue") and held and abs(held[1] - start) < 1e-6:
                held[1] = start + duration
            else:
                if held:
                    out.append((pitch, *pending.pop(pitch)))
                pending[pitch] = [start, start + duration]
            if tie not in ("start", "continue"):
                out.append((pitch, *pending.pop(pitch)))
    return out + [(pitch, *span) for pitch, span in pending.items()]


# --- the cache layout ---------------------------------------------------------------


def _pack(kind: str, items: list) -> dict[str, np.ndarray]:
    """Items as flat arrays: per-step arrays concatenated with `offsets`."""
    lines = [item.melody for item in items] if kind == "lead_sheets" else items
    lengths = [len(line.events) for line in lines]
    arrays = {
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "events": np.concatenate([line.events for line in lines] or [[]]).astype(np.int16),
        "steps_per_bar": np.array([line.steps_per_bar for line in lines], dtype=np.int32),
        "start_step": np.array([line.start_step for line in lines], dtype=np.int64),
        "qpm": np.array([line.qpm for line in lines], dtype=np.float64),
        "steps_per_quarter": np.array([line.steps_per_quarter for line in lines], dtype=np.int32),
        "time_signature": np.array([line.time_signature for line in lines],
                                   dtype=np.int32).reshape(-1, 2),
        "piece": np.array([line.piece for line in lines], dtype=str),
        "part": np.array([line.part for line in lines], dtype=str),
    }
    if kind == "melodies" or kind == "lead_sheets":
        arrays["program"] = np.array([line.program for line in lines], dtype=np.int32)
    if kind in ("drums", "grooves"):
        empty = np.zeros((0, len(DRUM_CLASS_NAMES)))
        arrays["velocities"] = np.concatenate([t.velocities for t in items] or [empty]
                                              ).astype(np.uint8)
    if kind == "grooves":
        arrays["timing"] = np.concatenate([t.offsets for t in items] or [empty]
                                          ).astype(np.float32)
    if kind == "lead_sheets":
        arrays["chords"] = np.concatenate([s.chords for s in items]
                                          or [np.zeros((0, 3))]).astype(np.int16)
    return arrays


def _unpack(kind: str, arrays) -> list:
    """The inverse of _pack."""
    data = {name: arrays[name] for name in arrays.files}
    offsets, items = data["offsets"], []
    for i in range(len(offsets) - 1):
        span = slice(offsets[i], offsets[i + 1])
        common = dict(steps_per_bar=int(data["steps_per_bar"][i]),
                      start_step=int(data["start_step"][i]), qpm=float(data["qpm"][i]),
                      steps_per_quarter=int(data["steps_per_quarter"][i]),
                      time_signature=tuple(int(v) for v in data["time_signature"][i]),
                      piece=str(data["piece"][i]), part=str(data["part"][i]))
        if kind in ("drums", "grooves"):
            timing = data["timing"][span] if kind == "grooves" else None
            items.append(DrumTrack(data["events"][span], velocities=data["velocities"][span],
                                   offsets=timing, **common))
            continue
        line = MelodyLine(data["events"][span], program=int(data["program"][i]), **common)
        items.append(LeadSheet(line, data["chords"][span]) if kind == "lead_sheets" else line)
    return items


# --- statistics ------------------------------------------------------------------------


def corpus_stats(items: list) -> dict:
    """Counts for a manifest or a model card: pieces, items and steps, in
    all and per part; pieces per time signature; pitch range (melodies);
    hits per drum class (drums); chord coverage (lead sheets)."""
    lines = [i.melody if isinstance(i, LeadSheet) else i for i in items]
    parts: dict[str, dict] = {}
    for item, line in zip(items, lines):
        entry = parts.setdefault(item_part(item), {"pieces": set(), "items": 0, "steps": 0})
        entry["pieces"].add(line.piece)
        entry["items"] += 1
        entry["steps"] += len(line.events)
    meters = Counter()
    for piece, sig in {line.piece: line.time_signature for line in lines}.items():
        meters[f"{sig[0]}/{sig[1]}"] += 1
    stats = {"pieces": len({line.piece for line in lines}), "items": len(items),
             "steps": int(sum(len(line.events) for line in lines)),
             "parts": {name: {"pieces": len(e["pieces"]), "items": e["items"], "steps": e["steps"]}
                       for name, e in sorted(parts.items())},
             "time_signatures": dict(meters.most_common())}
    if lines and not isinstance(lines[0], DrumTrack):
        events = np.concatenate([line.events for line in lines])
        pitches = events[events >= 0]
        if len(pitches):
            stats["pitch_range"] = [int(pitches.min()), int(pitches.max())]
            stats["pitch_percentiles_1_99"] = [int(v) for v in np.percentile(pitches, [1, 99])]
            stats["notes"] = int(len(pitches))
    elif lines:
        events = np.concatenate([t.events for t in lines]).astype(np.int64)
        stats["hits_per_class"] = {name: int(np.count_nonzero(events >> i & 1))
                                   for i, name in enumerate(DRUM_CLASS_NAMES)}
    if items and isinstance(items[0], LeadSheet):
        chords = np.concatenate([s.chords for s in items])
        stats["chord_steps_fraction"] = round(float(np.mean(chords[:, 0] >= 0)), 4)
    return stats
