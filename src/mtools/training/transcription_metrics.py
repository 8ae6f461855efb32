"""Transcription figures, as the Onsets and Frames papers report them:
mir_eval's note precision / recall / F1 (onsets within 50 ms), with
offsets too, with velocities too, and frame F1; per piece, then averaged
over pieces. Needs mir_eval (the `eval` extra, also in `train` and `dev`).
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np

from mtools.errors import InputFormatError, MtoolsError
from mtools.models.onsets_frames import OnsetsFrames, TranscribeOptions, predictions_to_score
from mtools.models.transcription import CLASS_THRESHOLDS, DecodeOptions, decode_notes, \
    note_labels
from mtools.score import Note, Score, apply_sustain

ONSET_TOLERANCE_S = 0.05
OFFSET_RATIO = 0.2  # mir_eval's default: an offset within 20% of the note (or 50 ms)
VELOCITY_TOLERANCE = 0.1
ONSET_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # thresholds choose_thresholds tries
FRAME_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
HARMONIC_GRID = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # 0: no onset dropped as a partial
ONSET_STEP = 0.05  # once the harmonic threshold is chosen, the onset one moves by this
CLASS_ONSET_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)  # drums
CLASS_ROUNDS = 2  # passes over a drum model's classes, each class's threshold in turn
MIDI_SUFFIXES = (".mid", ".midi", ".MID", ".MIDI")  # a reference beside its audio
PROTOCOL = (
    "Whole held-out performances of pieces that neither training nor any choice (checkpoint, "
    "thresholds) saw, rendered with the held-out soundfont, transcribed as "
    "`mtools transcribe` does (the model's default thresholds, see encoding.decoding). "
    "The reference is the performance MIDI with "
    "notes lengthened by the sustain pedal. note_*: mir_eval.transcription, onsets within "
    "50 ms; note_offset_*: offsets too (within 20% of the note or 50 ms); note_velocity_*: "
    "mir_eval.transcription_velocity (tolerance 0.1); frame_*: over (frame, key) cells at the "
    "model's hop. Each figure is the mean over pieces, as the papers report. A drum model's "
    "hits score as their class's key; one class's hits starting within 50 ms of a group's "
    "first count as one, the loudest (in the reference and the transcription alike).")


def _mir_eval():
    try:
        import mir_eval
        import mir_eval.transcription_velocity  # noqa: F401
    except ImportError:
        raise MtoolsError("scoring transcriptions needs mir_eval",
                          hint="pip install 'mtools[eval]' (or pip install mir_eval)") from None
    return mir_eval


def note_arrays(notes: Iterable[Note], net: OnsetsFrames):
    """Intervals (s), pitches (Hz) and velocities of the notes the model's
    keys can play; a note of no length lasts one frame, as in its labels
    (mir_eval refuses empty intervals, and ASAP holds a few). A drum note
    sounds as its class's pitch (the one transcriptions write), so a rim
    shot (40) in the reference matches a transcribed snare (38), and hits
    of one class closer than the onset tolerance count once (merged_hits)."""
    keys = net.keys
    notes = scored_notes(notes, net)
    shortest = net.front_end.frame_s
    intervals = np.array([[n.start_s, max(n.end_s, n.start_s + shortest)] for n in notes],
                         float).reshape(-1, 2)
    pitches = np.array([keys.pitch_of(keys.index_of(n)) for n in notes], float)
    hz = 440.0 * 2.0 ** ((pitches - 69.0) / 12.0)
    velocities = np.array([n.velocity for n in notes], float)
    return intervals, hz, velocities


def scored_notes(notes: Iterable[Note], net: OnsetsFrames) -> list[Note]:
    """The notes the model's keys can play, a drum model's merged
    (merged_hits): those note_arrays scores, in its order."""
    notes = [n for n in notes if net.keys.index_of(n) is not None]
    return merged_hits(notes, net.keys) if net.keys.is_drums else notes


def merged_hits(notes: list[Note], keys) -> list[Note]:
    """Drum hits with each class's hits that start less than
    ONSET_TOLERANCE_S after the first of a group merged into one, the
    loudest of the group (its time and velocity): a pedal hat 10 ms before
    a closed hat, both the closed hi-hat class, is one hit a transcription
    can find, not two of which one is always missed."""
    kept: list[Note] = []
    groups: dict[int, tuple[float, int]] = {}  # class -> (its group's first start, index in kept)
    for note in sorted(notes, key=lambda n: n.start_s):
        cls = keys.index_of(note)
        group = groups.get(cls)
        if group is not None and note.start_s - group[0] < ONSET_TOLERANCE_S:
            if note.velocity > kept[group[1]].velocity:
                kept[group[1]] = note
            continue
        groups[cls] = (note.start_s, len(kept))
        kept.append(note)
    return sorted(kept, key=lambda n: n.start_s)


def score_figures(reference: Score, estimate: Score, net: OnsetsFrames) -> dict[str, float]:
    """One piece's figures (see PROTOCOL); the reference's sustain pedal is
    applied here."""
    mir_eval = _mir_eval()
    ref_i, ref_hz, ref_v = note_arrays(apply_sustain(reference).notes, net)
    est_i, est_hz, est_v = note_arrays(estimate.notes, net)
    if not len(ref_i):
        raise MtoolsError("the reference holds no notes to score against")
    figures = {}
    for prefix, ratio in (("note", None), ("note_offset", OFFSET_RATIO)):
        p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
            ref_i, ref_hz, est_i, est_hz, onset_tolerance=ONSET_TOLERANCE_S, offset_ratio=ratio)
        figures.update({f"{prefix}_precision": p, f"{prefix}_recall": r, f"{prefix}_f1": f})
    p, r, f, _ = mir_eval.transcription_velocity.precision_recall_f1_overlap(
        ref_i, ref_hz, ref_v, est_i, est_hz, est_v, onset_tolerance=ONSET_TOLERANCE_S,
        offset_ratio=None, velocity_tolerance=VELOCITY_TOLERANCE)
    figures.update({"note_velocity_precision": p, "note_velocity_recall": r, "note_velocity_f1": f})
    figures.update(frame_figures(reference, estimate, net))
    return figures


def frame_figures(reference: Score, estimate: Score, net: OnsetsFrames) -> dict[str, float]:
    """Precision, recall and F1 over (frame, key) cells: the reference
    with its pedal, the estimate as decoded (no pedal of its own)."""
    end = max([reference.total_s, estimate.total_s] + [n.end_s for n in estimate.notes])
    frames = int(np.ceil(end / net.front_end.frame_s)) + 1
    ref = note_labels(reference, frames, net.front_end, net.keys)["frame"].astype(bool)
    est = note_labels(estimate, frames, net.front_end, net.keys, sustain=False)["frame"].astype(bool)
    hits = float((ref & est).sum())
    precision = hits / max(float(est.sum()), 1.0)
    recall = hits / max(float(ref.sum()), 1.0)
    f1 = 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
    return {"frame_precision": precision, "frame_recall": recall, "frame_f1": f1}


def transcribe_samples(net: OnsetsFrames, samples: np.ndarray,
                       options: TranscribeOptions = TranscribeOptions()) -> Score:
    """Transcribe mono float32 audio already at the model's rate."""
    return predictions_to_score(net.predict_all(net.front_end.stream([samples])), net, options,
                                len(samples) / net.front_end.sample_rate_hz)


def pieces_figures(net: OnsetsFrames, pieces, options: TranscribeOptions = TranscribeOptions()
                   ) -> dict:
    """Mean figures over (name, reference Score, audio at the model's rate)
    pieces, with how many, their seconds, and seconds of audio per second
    of transcription (this process, after loading)."""
    rows, audio_s, spent = [], 0.0, 0.0
    counts = np.zeros((net.keys.keys, 3), int)  # per output: matched, transcribed, reference
    for name, reference, samples in pieces:
        if not reference.notes:
            raise InputFormatError(f"{name}: its reference holds no notes to score against")
        started = time.perf_counter()
        estimate = transcribe_samples(net, samples, options)
        spent += time.perf_counter() - started
        audio_s += len(samples) / net.front_end.sample_rate_hz
        rows.append(score_figures(reference, estimate, net))
        if net.keys.is_drums:
            counts += class_counts(reference, estimate, net)
    if not rows:
        raise MtoolsError("no pieces to score")
    means = {key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}
    by_class = {"by_class": class_figures(counts, net)} if net.keys.is_drums else {}
    return {**means, "pieces": len(rows), "audio_seconds": round(audio_s, 1),
            "realtime_factor": round(audio_s / max(spent, 1e-9), 1), **by_class}


def class_counts(reference: Score, estimate: Score, net: OnsetsFrames) -> np.ndarray:
    """(outputs, 3) onsets matched within ONSET_TOLERANCE_S, transcribed
    and in the reference, per output (a drum model's classes). One matching
    over all notes: pitches apart never match, so it is each class's own."""
    ref_i, ref_hz, _ = note_arrays(reference.notes, net)
    est_i, est_hz, _ = note_arrays(estimate.notes, net)
    matched = _mir_eval().transcription.match_notes(
        ref_i, ref_hz, est_i, est_hz, onset_tolerance=ONSET_TOLERANCE_S,
        offset_ratio=None) if len(ref_i) and len(est_i) else []
    ref_out, est_out = _outputs(reference.notes, net), _outputs(estimate.notes, net)
    found = ref_out[[r for r, _ in matched]]
    return np.stack([np.bincount(out, minlength=net.keys.keys)
                     for out in (found, est_out, ref_out)], axis=1)


def _outputs(notes: Iterable[Note], net: OnsetsFrames) -> np.ndarray:
    """The output index of each note note_arrays keeps, in its order."""
    return np.array([net.keys.index_of(n) for n in scored_notes(notes, net)], int)


def class_figures(counts: np.ndarray, net: OnsetsFrames) -> dict:
    """Per output, named by its pitch: onset precision / recall / F1 over
    all pieces' hits pooled, with the counts of hits in the reference and
    transcribed. Precision is None when nothing was transcribed, recall and
    F1 when the reference holds no hit; F1 is 0 when none was found."""
    figures = {}
    for index, (matched, transcribed, referenced) in enumerate(counts):
        p = float(matched / transcribed) if transcribed else None
        r = float(matched / referenced) if referenced else None
        f = None if r is None else 0.0 if matched == 0 else 2 * p * r / (p + r)
        figures[str(net.keys.pitch_of(index))] = {
            "precision": _round(p), "recall": _round(r), "f1": _round(f),
            "reference_hits": int(referenced), "transcribed_hits": int(transcribed)}
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def audio_pairs(data: list[str], references: list[str], sample_rate_hz: int):
    """(name, reference Score, mono audio at sample_rate_hz) for each audio
    file named or found in folders of `data`, its reference from
    `references` (in order) or the MIDI file of the same name beside it."""
    from pathlib import Path

    from mtools.errors import InputFormatError, InputMissingError, UsageError
    from mtools.io.audio import read_audio
    from mtools.io.formats import detect_format, read_scores
    from mtools.io.sniff import AUDIO_FORMATS, extensions_for
    from mtools.io.streams import expand_inputs

    inputs = expand_inputs(data, extensions=extensions_for(AUDIO_FORMATS), allow_stdin=False)
    if references and len(references) != len(inputs):
        raise UsageError(f"{len(references)} --ref files for {len(inputs)} audio inputs",
                         hint="give one --ref per audio file, in order, or none")
    for index, source in enumerate(inputs):
        if references:
            midi = Path(references[index])
        else:
            found = [source.path.with_suffix(s) for s in MIDI_SUFFIXES
                     if source.path.with_suffix(s).exists()]
            if not found:
                raise InputMissingError(f"{source.name}: no reference MIDI of the same name "
                                        "beside it", hint="name one with --ref")
            midi = found[0]
        if not midi.is_file():
            raise InputMissingError(f"{midi}: no such file")
        blob = midi.read_bytes()
        scores = read_scores(blob, detect_format(blob, None, str(midi)), str(midi))
        if len(scores) != 1:
            raise InputFormatError(f"{midi}: holds {len(scores)} scores; a reference is one "
                                   f"performance of {source.name}",
                                   hint="split it with mtools convert -o DIR/")
        reference = scores[0]
        yield source.name, reference, read_audio(source.path, sample_rate_hz, name=source.name)


def choose_thresholds(net: OnsetsFrames, pieces) -> dict:
    """Decoding thresholds chosen on (name, reference Score, audio) pieces,
    each run through the network once, by mean note F1 (onsets alone
    decide which notes there are): the onset threshold, then the harmonic
    one at it (pitched models), then the onset threshold again a step
    either way (dropping partials leaves room for a lower one); last the
    frame threshold with the best mean note-with-offset F1 at those
    (drums: onsets only; instead of the harmonic step, an onset threshold
    per class, class_onset_thresholds). Returns them with those figures."""
    mir_eval = _mir_eval()
    runs = [(net.predict_all(net.front_end.stream([samples])),
             note_arrays(apply_sustain(reference).notes, net)) for _, reference, samples in pieces]
    if not runs:
        raise MtoolsError("no pieces to choose thresholds on")

    def mean_f1(options: DecodeOptions, offset_ratio) -> float:
        scores = []
        for probs, (ref_i, ref_hz, _) in runs:
            est_i, est_hz, _ = note_arrays(decode_notes(probs, net.front_end, net.keys, options), net)
            scores.append(mir_eval.transcription.precision_recall_f1_overlap(
                ref_i, ref_hz, est_i, est_hz, onset_tolerance=ONSET_TOLERANCE_S,
                offset_ratio=offset_ratio)[2] if len(est_i) else 0.0)
        return float(np.mean(scores))

    def best(scores: dict) -> float:
        return max(scores, key=scores.get)

    by_onset = {t: mean_f1(DecodeOptions(t, 0.5), None) for t in ONSET_GRID}
    onset, harmonic, chosen = best(by_onset), 0.0, {}
    if not net.keys.is_drums:
        by_harmonic = {h: mean_f1(DecodeOptions(onset, 0.5, harmonic_threshold=h), None)
                       for h in HARMONIC_GRID}
        harmonic = best(by_harmonic)
        by_onset_again = {round(t, 4): by_harmonic[harmonic] if t == onset else mean_f1(
            DecodeOptions(t, 0.5, harmonic_threshold=harmonic), None)
            for t in (onset, onset - ONSET_STEP, onset + ONSET_STEP) if 0.0 < t < 1.0}  # ties: keep it
        onset = best(by_onset_again)
        chosen = {"harmonic_threshold": harmonic,
                  "note_f1_by_harmonic_threshold": _rounded(by_harmonic),
                  "note_f1_by_onset_threshold_at_harmonic": _rounded(by_onset_again)}
    else:
        by_class = class_onset_thresholds(lambda thresholds: mean_f1(
            DecodeOptions(onset, 0.5, class_onset_thresholds=thresholds), None),
            (onset,) * net.keys.keys, by_onset[onset])
        if by_class is not None:
            chosen = {CLASS_THRESHOLDS: list(by_class[0]),
                      "note_f1_at_class_thresholds": round(by_class[1], 4)}
    frames = (0.5,) if net.keys.is_drums else FRAME_GRID
    per_class = tuple(chosen.get(CLASS_THRESHOLDS, ())) or None
    by_frame = {t: mean_f1(DecodeOptions(onset, t, harmonic_threshold=harmonic,
                                         class_onset_thresholds=per_class), OFFSET_RATIO)
                for t in frames}
    return {"onset_threshold": onset, "frame_threshold": best(by_frame), **chosen,
            "note_f1_by_onset_threshold": _rounded(by_onset),
            "note_offset_f1_by_frame_threshold": _rounded(by_frame),
            "pieces": len(runs)}


def class_onset_thresholds(score, start: tuple[float, ...], start_score: float
                           ) -> tuple[tuple[float, ...], float] | None:
    """One onset threshold per class by coordinate ascent of `score`
    (thresholds → mean note F1) from `start`: CLASS_ROUNDS passes, each
    trying CLASS_ONSET_GRID for one class at a time with the others held; a
    change must gain more than 1e-4. None when no change gains."""
    best, best_score = tuple(start), start_score
    for _ in range(CLASS_ROUNDS):
        for index in range(len(best)):
            for threshold in CLASS_ONSET_GRID:
                trial = best[:index] + (threshold,) + best[index + 1:]
                if trial != best:
                    trial_score = score(trial)
                    if trial_score > best_score + 1e-4:
                        best, best_score = trial, trial_score
    return None if best == tuple(start) else (best, best_score)


def _rounded(scores: dict) -> dict:
    return {str(t): round(f, 4) for t, f in scores.items()}
